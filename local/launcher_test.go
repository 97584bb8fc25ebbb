//go:build linux

package local_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// parentOf reads a process's parent pid and state from /proc; ok is
// false once the process is gone (reaped).
func parentOf(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "PPid:"); found {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if v, found := strings.CutPrefix(line, "State:"); found {
			state = strings.TrimSpace(v)
		}
	}
	return ppid, state, true
}

// launcherProvider is a provider whose isolated agents the launcher
// starts from the first on (local.UseLauncher(1), restored at the end).
func launcherProvider(t *testing.T) (*local.Provider, *compute.Compute) {
	t.Helper()
	if local.AgentProgram() == "/proc/self/exe" {
		t.Skip("no embedded agent program runs here (see TestEmbeddedAgentRuns), so there is no launcher: agents start from this program")
	}
	previous := local.UseLauncher(1)
	t.Cleanup(func() { local.UseLauncher(previous) })
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, compute.New(compute.Config{Provider: p})
}

// waitReaped waits until agent, once the launcher's child, is gone: the
// launcher reaps its agents on SIGCHLD, after Destroy has seen them exit.
func waitReaped(t *testing.T, agent, launcher int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ppid, state, ok := parentOf(agent)
		if !ok || ppid != launcher {
			return // reaped (or the pid already names another process)
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after Destroy the agent %d is still there (%s)", agent, state)
		}
	}
}

// Isolated agents are started by the launcher, a small process of the
// embedded agent program, rather than forked from this (large) process:
// the sandbox works as any other, and once destroyed, its agent is gone,
// reaped by the launcher (no zombie left). Should the launcher die, the
// sandboxes it started die with it, and new ones still start.
func TestLauncher(t *testing.T) {
	p, c := launcherProvider(t)
	ctx := context.Background()

	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	launcher := local.LauncherPid()
	if launcher == 0 {
		t.Fatal("no launcher runs after an isolated Create", local.LauncherFailed())
	}
	agent := local.AgentPid(sb.Driver())
	if ppid, _, _ := parentOf(agent); ppid != launcher {
		t.Errorf("the agent's parent is %d; want the launcher, %d", ppid, launcher)
	}
	if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
		t.Errorf("echo hi: %+v, %v", res, err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	waitReaped(t, agent, launcher)

	// A launcher killed from outside takes its sandboxes with it.
	doomed, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(launcher, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if res, err := doomed.RunCommand(ctx, "echo", "hi"); err == nil {
		// The agent may still be answering when its SIGKILL arrives;
		// shortly after, nothing answers.
		for deadline := time.Now().Add(30 * time.Second); err == nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("30 s after its launcher was killed, a sandbox still runs commands: %+v", res)
			}
			_, err = doomed.RunCommand(ctx, "true")
		}
	}
	doomed.Destroy(ctx)
	for deadline := time.Now().Add(30 * time.Second); local.LauncherPid() == launcher; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the launcher %d was killed, the provider still takes it for running", launcher)
		}
	}

	// New sandboxes start all the same (from a new launcher).
	for i := range 2 {
		sb, err := c.Create(ctx, nil)
		if err != nil {
			t.Fatalf("create %d after the launcher died: %v", i, err)
		}
		if res, err := sb.RunCommand(ctx, "echo", "again"); err != nil || res.Stdout != "again\n" {
			t.Errorf("create %d after the launcher died: echo again: %+v, %v", i, res, err)
		}
		sb.Destroy(ctx)
	}
	second := local.LauncherPid()
	if second == 0 || second == launcher {
		t.Errorf("launcher after the first died: %d (the first was %d); want a new one", second, launcher)
	}

	// Closing the last provider stops it.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := local.LauncherUsers(); n > 0 {
		t.Logf("not checking that closing the last provider stops the launcher: %d other providers are open", n)
		return
	}
	for deadline := time.Now().Add(30 * time.Second); local.LauncherPid() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the last provider closed, the launcher %d still runs", second)
		}
	}
	if _, _, ok := parentOf(second); ok {
		t.Errorf("the launcher %d stopped but was not reaped", second)
	}
}

// Concurrent starts through one launcher: each gets its own agent (the
// launcher serves requests in parallel, each answered on its own socket),
// and all are reaped once destroyed.
func TestLauncherConcurrent(t *testing.T) {
	_, c := launcherProvider(t)
	ctx := context.Background()
	// The first start starts the launcher (and waits for it, in this
	// test mode); starts meanwhile would go directly, as they do while
	// a launcher starts.
	first, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.Destroy(ctx)

	const n = 10
	sbs := make([]*compute.Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sb, err := c.Create(ctx, nil)
			if err == nil {
				var res *compute.Result
				res, err = sb.RunCommand(ctx, "echo", strconv.Itoa(i))
				if err == nil && res.Stdout != strconv.Itoa(i)+"\n" {
					err = fmt.Errorf("echo %d printed %q", i, res.Stdout)
				}
			}
			sbs[i], errs[i] = sb, err
		})
	}
	wg.Wait()
	launcher := local.LauncherPid()
	agents := map[int]bool{}
	for i, sb := range sbs {
		if errs[i] != nil {
			t.Errorf("sandbox %d: %v", i, errs[i])
		}
		if sb == nil {
			continue
		}
		agent := local.AgentPid(sb.Driver())
		if agents[agent] {
			t.Errorf("sandbox %d has the agent %d of another", i, agent)
		}
		agents[agent] = true
		if ppid, _, _ := parentOf(agent); ppid != launcher {
			t.Errorf("sandbox %d: its agent's parent is %d; want the launcher, %d", i, ppid, launcher)
		}
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("destroy %d: %v", i, err)
		}
	}
	for agent := range agents {
		waitReaped(t, agent, launcher)
	}
}
