//go:build linux

package local_test

import (
	"context"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/local"
)

// The cost of running each command in a cgroup of its own (what makes a
// timeout or kill reach processes that left the command's tree): the
// exec round trip of `true` in one running sandbox, with and without.
// Run with -count so that the two alternate:
//
//	go test ./local -run '^$' -bench ExecCommandCgroup -benchtime 300x -count 10
func BenchmarkExecCommandCgroup(b *testing.B) {
	ctx := context.Background()
	sb := benchSandbox(b)
	if info, _ := sb.Info(ctx); !strings.Contains(strings.Join(info.Limits, "\n"), "commands: each in a cgroup of its own") {
		b.Skipf("skipped: no per-command cgroups here: %v", info.Limits)
	}
	for _, on := range []bool{true, false} {
		name := "own-cgroup"
		if !on {
			name = "process-tree"
		}
		b.Run(name, func(b *testing.B) {
			local.SetCommandCgroups(on)
			defer local.SetCommandCgroups(true)
			for b.Loop() {
				if res, err := sb.RunCommand(ctx, "/bin/true"); err != nil || res.ExitCode != 0 {
					b.Fatal(res, err)
				}
			}
		})
	}
}
