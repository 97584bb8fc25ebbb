//go:build linux

package local_test

import (
	"context"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// A working directory the sandbox cannot create fails Create with a clear
// error, and leaves nothing running.
func TestCreateBadDir(t *testing.T) {
	p, err := local.New(local.Options{})
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
	t.Log(err)
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
	for _, opts := range []local.Options{
		{MaxMemory: 256 << 20, DiskSize: 256 << 20}, // files live in memory
		{MaxCPU: -1},
		{Isolation: "chroot"},
	} {
		if p, err := local.New(opts); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded; want an error", opts)
		} else {
			t.Log(err)
		}
	}
}
