//go:build linux

package local_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Threat: a cell that exhausts the sandbox's memory. The kernel kills the
// interpreter, never the agent: the context reports it as died (exit 137),
// Restart gives it a fresh interpreter, and the sandbox goes on.
func TestCodeContextOutOfMemory(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxMemory: 128 << 20}, nil)
	ctx := context.Background()
	if info, _ := sb.Info(ctx); !strings.Contains(strings.Join(info.Limits, "\n"), "(cgroup v") {
		t.Skipf("the memory limit is not a cgroup's here (%v): Python would get a MemoryError instead of being killed", info.Limits)
	}
	cc, err := sb.NewCodeContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close(ctx)
	_, err = cc.Run(ctx, "b = []\nwhile True:\n    b.append(bytearray(16 << 20))", nil)
	if !errors.Is(err, compute.ErrContextDied) || !errors.Is(err, compute.ErrOutOfMemory) {
		t.Fatalf("a cell past the memory limit: %v; want an error matching both compute.ErrContextDied and compute.ErrOutOfMemory", err)
	}
	if err := cc.Restart(ctx); err != nil {
		t.Fatalf("Restart after the OOM kill: %v", err)
	}
	if ex, err := cc.Run(ctx, "6 * 7", nil); err != nil || ex.Main() == nil || ex.Main().Text != "42" {
		t.Fatalf("after Restart: %+v, %v; want 42", ex, err)
	}
	if res, err := sb.RunCommand(ctx, "echo", "alive"); err != nil || res.Stdout != "alive\n" {
		t.Fatalf("the sandbox did not survive: %+v, %v", res, err)
	}
}
