//go:build linux

package local_test

import (
	"context"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// A sandbox started for a Create (no reserve) takes the Create's settings
// with its configuration, not in an operation of its own: they must come
// out the same as through a reserve (a bad working directory:
// TestCreateBadDir/cold), and settings too large to go with the
// configuration must take the other way.
func TestColdCreateSettings(t *testing.T) {
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()

	// A bad working directory: TestCreateBadDir/cold.
	big := strings.Repeat("x", 100<<10) // past the 64 KiB configuration datagram
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"small", map[string]string{"GREETING": "hello"}},
		{"large", map[string]string{"GREETING": "hello", "BIG": big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, err := c.Create(ctx, &compute.CreateOptions{Dir: "proj/src", Env: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(ctx)
			res, err := sb.RunCommand(ctx, "sh", "-c", `pwd; echo "$GREETING"; printf %s "$BIG" | wc -c`)
			if err != nil {
				t.Fatal(err)
			}
			want := local.WorkDir + "/proj/src\nhello\n" + map[string]string{"small": "0", "large": "102400"}[tc.name] + "\n"
			if res.Stdout != want {
				t.Errorf("pwd, $GREETING, ${#BIG} = %q; want %q (stderr %q)", res.Stdout, want, res.Stderr)
			}
		})
	}
}
