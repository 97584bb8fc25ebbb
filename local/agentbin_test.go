//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/local/internal/agentbin"
	"github.com/computesdk-go/compute/local/internal/agentbin/srchash"
)

// useCurrentAgent makes this test binary's sandboxes run the agent built
// from the sources of the day (this binary re-executed) when the
// embedded agent is out of date, so that the tests test the code as it
// is; agentbin's TestEmbeddedAgentCurrent fails for it, saying how to
// rebuild. It reports what it chose.
func useCurrentAgent() string {
	if _, err := exec.LookPath("go"); err != nil {
		return "" // nothing to compare with: the embedded agent runs
	}
	sum, err := srchash.Sum()
	if err != nil {
		return fmt.Sprintf("local tests: cannot list the agent's sources (%v); the embedded agent runs", err)
	}
	if sum != agentbin.SourceHash {
		local.UseEmbeddedAgent(false)
		return "local tests: the embedded sandbox agent is out of date (go generate ./local/internal/agentbin); these tests run the agent from this test binary"
	}
	return ""
}

// The sandbox's agent runs from the embedded program, not from the
// host's, wherever one is embedded for the architecture (and this test
// binary's, where the embedded one is out of date: useCurrentAgent), in
// either isolation, and the sandbox works.
func TestEmbeddedAgentRuns(t *testing.T) {
	_, err := agentbin.Path()
	if errors.Is(err, agentbin.ErrNotEmbedded) {
		t.Skipf("%v: sandboxes run this program as their agent", err)
	} else if err != nil {
		t.Fatal(err)
	}
	wantEmbedded := local.AgentProgram() != "/proc/self/exe"
	for _, iso := range []local.Isolation{local.IsolationNamespaces, local.IsolationNone} {
		t.Run(string(iso), func(t *testing.T) {
			ctx := context.Background()
			sb := newSandboxWith(t, local.Options{Prestart: -1, Isolation: iso}, nil)
			exe, err := local.AgentExe(sb.Driver())
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.HasPrefix(exe, "/memfd:compute-agent"); got != wantEmbedded {
				self, _ := os.Readlink("/proc/self/exe")
				t.Errorf("the agent runs %q (this test binary is %q); want the embedded program: %v", exe, self, wantEmbedded)
			}
			if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
				t.Errorf("echo hi: %+v, %v", res, err)
			}
		})
	}
}

// Where the kernel will not execute the embedded program (a policy such
// as vm.memfd_noexec=2), sandboxes start with this program as their
// agent, and go on doing so.
func TestEmbeddedAgentRefused(t *testing.T) {
	notExecutable := t.TempDir() + "/agent"
	if err := os.WriteFile(notExecutable, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer local.SetEmbeddedAgent(notExecutable)()
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	c := compute.New(compute.Config{Provider: p})
	for i := range 2 {
		sb, err := c.Create(ctx, nil)
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		exe, err := local.AgentExe(sb.Driver())
		self, _ := os.Readlink("/proc/self/exe")
		if err != nil || exe != self {
			t.Errorf("create %d: the agent runs %q, %v; want this test binary, %q", i, exe, err, self)
		}
		if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
			t.Errorf("create %d: echo hi: %+v, %v", i, res, err)
		}
		sb.Destroy(ctx)
	}
	if got := local.AgentProgram(); got != "/proc/self/exe" {
		t.Errorf("after a refusal the next agent starts from %q; want this program", got)
	}
}
