package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The example runs, whole, on the local provider, and prints what each
// step did: every line is checked.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := regexp.MustCompile(`^sandbox (lsb-[a-z0-9]+) on local
Python 3\.\d+\.\d+
mean=4\.30 stdev=1\.49
Node\.js v\d+\.\d+\.\d+ \[ 1, 4, 9 \]
uname: Linux \S+
app/: data/, main\.py \(44 bytes\)
hello from app/main\.py
app/main\.py exists after Remove: false
info: id=(lsb-[a-z0-9]+) provider=local status=running
$`)
	m := want.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output:\n%s\nwant it to match:\n%s", out.String(), want)
	}
	if m[1] != m[2] {
		t.Errorf("Info's id %q is not the created sandbox's %q", m[2], m[1])
	}
}
