//go:build linux

package local_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Threat: a start that failed once its agent ran (where a host out of
// descriptors failed to put the agent in its cgroup) waited for good for
// the agent to exit: nothing waited for it yet. The start fails with its
// error, and the agent is killed and reaped, started directly or by the
// launcher.
func TestStartFailsAfterAgentRuns(t *testing.T) {
	for _, viaLauncher := range []bool{false, true} {
		name := "direct"
		if viaLauncher {
			name = "launcher"
		}
		t.Run(name, func(t *testing.T) {
			var p *local.Provider
			var c *compute.Compute
			if viaLauncher {
				p, c = launcherProvider(t)
			} else {
				previous := local.UseLauncher(-1)
				t.Cleanup(func() { local.UseLauncher(previous) })
				var err error
				if p, err = local.New(local.Options{Prestart: -1}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				c = compute.New(compute.Config{Provider: p})
			}
			ctx := context.Background()
			if viaLauncher {
				startLauncher(t, c)
			}
			injected := errors.New("injected failure after the agent started")
			var agents []int
			local.AfterLimit(p, func(agent int) error {
				agents = append(agents, agent)
				return injected
			})
			t.Cleanup(func() { local.AfterLimit(p, nil) })
			sb, err := createWithin(t, c, "failing once its agent runs")
			if err == nil {
				sb.Destroy(ctx)
			}
			if !errors.Is(err, injected) {
				t.Errorf("Create = %v; want the start's error", err)
			}
			if len(agents) != 1 {
				t.Fatalf("%d agents started; want 1", len(agents))
			}
			waitUntil(t, "the failed start's agent is killed and reaped", func() bool {
				_, ok := parentOf(agents[0])
				return !ok
			})
			local.AfterLimit(p, nil)
			sb, err = c.Create(ctx, nil)
			if err != nil {
				t.Fatalf("create after a failed start: %v", err)
			}
			sb.Destroy(ctx)
		})
	}
}

// Threat: an agent that never finished its setup (stopped, or stuck in
// the kernel) held its Create for good: the host waited for the agent's
// ready without a bound. The Create fails saying so, and the agent is
// killed and reaped.
func TestSetupUnanswered(t *testing.T) {
	previous := local.UseLauncher(-1)
	t.Cleanup(func() { local.UseLauncher(previous) })
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := compute.New(compute.Config{Provider: p})
	previousTimeout := local.SetSetupTimeout(500 * time.Millisecond)
	t.Cleanup(func() { local.SetSetupTimeout(previousTimeout) })
	var agent int
	local.AfterLimit(p, func(pid int) error {
		agent = pid
		return syscall.Kill(pid, syscall.SIGSTOP)
	})
	t.Cleanup(func() { local.AfterLimit(p, nil) })

	ctx := context.Background()
	sb, err := createWithin(t, c, "with its agent stopped")
	if err == nil {
		sb.Destroy(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "did not finish its setup within 500ms") {
		t.Errorf("Create with its agent stopped: %v; want an error saying the agent did not finish its setup", err)
	}
	waitUntil(t, "the stopped agent is killed and reaped", func() bool {
		_, ok := parentOf(agent)
		return !ok
	})
	local.AfterLimit(p, nil)
	local.SetSetupTimeout(previousTimeout)
	sb, err = c.Create(ctx, nil)
	if err != nil {
		t.Fatalf("create after an agent that did not finish its setup: %v", err)
	}
	sb.Destroy(ctx)
}

// createWithin creates a sandbox with c, and fails the test if Create is
// still blocked after a minute (a hang, not a slow machine); what says
// in which situation.
func createWithin(t *testing.T, c *compute.Compute, what string) (*compute.Sandbox, error) {
	t.Helper()
	type result struct {
		sb  *compute.Sandbox
		err error
	}
	ch := make(chan result, 1)
	go func() {
		sb, err := c.Create(context.Background(), nil)
		ch <- result{sb, err}
	}()
	select {
	case r := <-ch:
		return r.sb, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Create %s still blocked after a minute: it hangs", what)
		return nil, nil
	}
}
