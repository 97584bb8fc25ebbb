//go:build linux

package local_test

import (
	"context"
	"errors"
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

// parentOf reads a process's parent pid from /proc; ok is false once the
// process is gone (a zombie is still there: it is gone once reaped).
func parentOf(pid int) (ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, found := strings.CutPrefix(line, "PPid:"); found {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return ppid, true
}

// launcherProvider is a provider whose isolated agents the launcher
// starts from the first on (local.UseLauncher(1), restored at the end).
func launcherProvider(t *testing.T) (*local.Provider, *compute.Compute) {
	t.Helper()
	if local.AgentProgram() == "/proc/self/exe" {
		t.Skip("no embedded agent program runs here (see TestEmbeddedAgentRuns), so there is no launcher: agents start from this program")
	}
	// A launcher stopped by an earlier test's last Close may still be
	// exiting; starts meanwhile go directly.
	waitUntil(t, "the launcher of closed providers has exited", func() bool {
		st := local.Launcher()
		return st.Users > 0 || st.Pid == 0
	})
	previous := local.UseLauncher(1)
	t.Cleanup(func() { local.UseLauncher(previous) })
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, compute.New(compute.Config{Provider: p})
}

// startLauncher has c create (and destroy) a sandbox, which starts the
// launcher in launcherProvider's mode, and returns the launcher's pid.
func startLauncher(t *testing.T, c *compute.Compute) (pid int) {
	t.Helper()
	ctx := context.Background()
	first, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.Destroy(ctx)
	st := local.Launcher()
	if st.Pid == 0 {
		t.Fatal("no launcher runs after an isolated Create", st.Failed)
	}
	return st.Pid
}

// checkParent checks that sb's agent is a child of want: the launcher's
// pid, or this process's for an agent started directly. when says in
// which situation.
func checkParent(t *testing.T, sb *compute.Sandbox, want int, when string) {
	t.Helper()
	if ppid, _ := parentOf(local.AgentPid(sb.Driver())); ppid != want {
		t.Errorf("%s the agent's parent is %d; want %d", when, ppid, want)
	}
}

// createChildOf creates a sandbox with c, destroyed at the test's end,
// and checks that its agent is a child of want (checkParent).
func createChildOf(t *testing.T, c *compute.Compute, want int, when string) *compute.Sandbox {
	t.Helper()
	sb, err := c.Create(context.Background(), nil)
	if err != nil {
		t.Fatalf("Create %s: %v", when, err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	checkParent(t, sb, want, when)
	return sb
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		if child, err := strconv.Atoi(e.Name()); err == nil {
			if ppid, ok := parentOf(child); ok && ppid == pid {
				kids = append(kids, child)
			}
		}
	}
	return kids
}

// waitUntil polls done until it holds, and fails the test with what it
// waited for after 30 s (a hang, not a slow machine).
func waitUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !done(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after 30 s: %s", what)
		}
	}
}

// waitReaped waits until agent, once the launcher's child, is gone: the
// launcher reaps its agents on SIGCHLD, after Destroy has seen them exit.
func waitReaped(t *testing.T, agent, launcher int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("the agent %d is reaped after Destroy", agent), func() bool {
		ppid, ok := parentOf(agent)
		return !ok || ppid != launcher // reaped (or the pid already names another process)
	})
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
	launcher := local.Launcher().Pid
	if launcher == 0 {
		t.Fatal("no launcher runs after an isolated Create", local.Launcher().Failed)
	}
	agent := local.AgentPid(sb.Driver())
	checkParent(t, sb, launcher, "through the launcher")
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
	// The agent may still be answering when its SIGKILL arrives;
	// shortly after, nothing answers.
	waitUntil(t, "a sandbox whose launcher was killed stops running commands", func() bool {
		_, err := doomed.RunCommand(ctx, "true")
		return err != nil
	})
	doomed.Destroy(ctx)
	waitUntil(t, fmt.Sprintf("the provider sees that the launcher %d was killed", launcher), func() bool {
		return local.Launcher().Pid != launcher
	})

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
	second := local.Launcher().Pid
	if second == 0 || second == launcher {
		t.Errorf("launcher after the first died: %d (the first was %d); want a new one", second, launcher)
	}

	// Closing the last provider stops it.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := local.Launcher().Users; n > 0 {
		t.Logf("not checking that closing the last provider stops the launcher: %d other providers are open", n)
		return
	}
	waitUntil(t, fmt.Sprintf("the launcher %d stops once the last provider closed", second), func() bool {
		return local.Launcher().Pid == 0
	})
	if _, ok := parentOf(second); ok {
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
	launcher := local.Launcher().Pid
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
		if ppid, _ := parentOf(agent); ppid != launcher {
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

// What the launcher cannot start is the Create's error, with the
// kernel's reason, and the launcher goes on starting agents.
func TestLauncherReportsFailure(t *testing.T) {
	_, c := launcherProvider(t)
	launcher := startLauncher(t, c)
	// Two uid mappings for the same ids: the kernel refuses the map.
	overlapping := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1_999_999_000, Size: 2}, {ContainerID: 1, HostID: 1_999_999_500, Size: 1}}
	err := local.LaunchWith(&syscall.SysProcAttr{
		Setsid:      true,
		Pdeathsig:   syscall.SIGKILL,
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: overlapping,
		GidMappings: overlapping,
	})
	if err == nil || !strings.Contains(err.Error(), "the launcher") || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("a start with overlapping uid maps: %v; want the launcher's EINVAL", err)
	}
	createChildOf(t, c, launcher, "after a failed launch (the same launcher)")
}

// A launcher that stops answering (here: stopped with SIGSTOP) fails the
// start that waits on it after launchTimeout, with an error that says
// so, instead of hanging it; later starts do not wait on it but start
// their agents directly, until it answers again. It is not killed: the
// sandboxes it started live on.
func TestLauncherUnanswered(t *testing.T) {
	_, c := launcherProvider(t)
	ctx := context.Background()
	launcher := startLauncher(t, c)
	earlier := createChildOf(t, c, launcher, "before the launcher stopped")
	if err := syscall.Kill(launcher, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Should the test fail, the launcher must not stay stopped.
	t.Cleanup(func() { syscall.Kill(launcher, syscall.SIGCONT) })

	// Short only for the start that the stopped launcher cannot answer:
	// a busy machine may take longer than this for one it can.
	previous := local.SetLaunchTimeout(500 * time.Millisecond)
	sb, err := c.Create(ctx, nil)
	local.SetLaunchTimeout(previous)
	if err == nil {
		sb.Destroy(ctx)
		t.Fatal("a Create through a stopped launcher succeeded")
	}
	if !strings.Contains(err.Error(), "the launcher did not answer within 500ms") {
		t.Errorf("a Create through a stopped launcher: %v; want an error saying the launcher did not answer", err)
	}
	if st := local.Launcher(); st.Pid != launcher || !st.Stalled {
		t.Errorf("after an unanswered start the launcher is %+v; want %d, stalled", st, launcher)
	}
	direct := createChildOf(t, c, os.Getpid(), "while the launcher is stalled (started directly)")
	direct.Destroy(ctx)

	// Going on, the launcher answers the request it kept: it is used
	// again, the agent it started for nobody is gone (its control
	// socket was closed with the failed start; awaitLate kills it too),
	// and what it started earlier still runs.
	if err := syscall.Kill(launcher, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the launcher is used again once it answered", func() bool { return !local.Launcher().Stalled })
	earlierAgent := local.AgentPid(earlier.Driver())
	waitUntil(t, "the agent the launcher started late, for nobody, is gone and reaped", func() bool {
		kids := childrenOf(launcher)
		return len(kids) == 1 && kids[0] == earlierAgent
	})
	if res, err := earlier.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
		t.Errorf("a sandbox the launcher started before it stalled: echo hi: %+v, %v", res, err)
	}
	createChildOf(t, c, launcher, "once the launcher answers again")
}

// A launcher whose socket is full (it reads nothing: stopped) held the
// start that sent to it, and every other start behind the launcher's
// lock, for good. A start finding it full starts its agent directly.
func TestLauncherFull(t *testing.T) {
	_, c := launcherProvider(t)
	launcher := startLauncher(t, c)
	if err := syscall.Kill(launcher, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(launcher, syscall.SIGKILL) })
	n, err := local.FillLauncherQueue()
	if err != nil {
		t.Fatalf("filling the launcher's socket: %d requests, then %v", n, err)
	}
	t.Logf("the stopped launcher's socket took %d requests", n)

	ctx := context.Background()
	sb, err := createWithin(t, c, "with the launcher's socket full")
	if err != nil {
		t.Fatalf("Create with the launcher's socket full: %v", err)
	}
	defer sb.Destroy(ctx)
	checkParent(t, sb, os.Getpid(), "with the launcher's socket full (started directly)")
	if res, err := sb.RunCommand(ctx, "echo", "hi"); err != nil || res.Stdout != "hi\n" {
		t.Errorf("echo hi: %+v, %v", res, err)
	}
}
