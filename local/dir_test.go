//go:build linux

package local_test

import (
	"context"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// A working directory the sandbox cannot create fails Create with a clear
// error, and leaves nothing running: from the reserve (a spare's init
// operation) and cold (the settings go with the agent's configuration).
func TestCreateBadDir(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prestart int
	}{{"reserve", 0}, {"cold", -1}} {
		t.Run(tc.name, func(t *testing.T) { testCreateBadDir(t, local.Options{Prestart: tc.prestart}) })
	}
}

func testCreateBadDir(t *testing.T, opts local.Options) {
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	sb, err := c.Create(ctx, &compute.CreateOptions{Dir: "/usr/cannot-create-here"})
	if err == nil {
		sb.Destroy(ctx)
		t.Fatal("Create with a working directory under read-only /usr succeeded")
	}
	// Clear: it names the directory and why it cannot be made.
	if msg := err.Error(); !strings.Contains(msg, "/usr/cannot-create-here") || !strings.Contains(msg, "read-only file system") {
		t.Errorf("Create's error %q does not name the directory and the reason (read-only file system)", msg)
	}
	if list, _ := p.List(ctx); len(list) != 0 {
		t.Errorf("%d sandboxes left after a failed Create", len(list))
	}
	// A good Dir, relative to the work dir, is created.
	sb, err = c.Create(ctx, &compute.CreateOptions{Dir: "proj/src"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.RunCommand(ctx, "pwd")
	if err != nil || res.Stdout != local.WorkDir+"/proj/src\n" {
		t.Fatalf("pwd = %+v, %v", res, err)
	}
}

// Options that cannot work are refused by New, saying why.
func TestNewRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts local.Options
		why  []string // what the error must say
	}{
		{local.Options{MaxMemory: 256 << 20, DiskSize: 256 << 20}, []string{"DiskSize", "must be below MaxMemory", "kept in its memory"}}, // files live in memory
		{local.Options{MaxCPU: -1}, []string{"negative limit"}},
		{local.Options{Isolation: "chroot"}, []string{`unknown isolation "chroot"`, `"namespaces" or "none"`}},
	} {
		p, err := local.New(tc.opts)
		if err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded; want an error", tc.opts)
			continue
		}
		for _, want := range tc.why {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("New(%+v) = %q; want it to say %q", tc.opts, err, want)
			}
		}
	}
}
