//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Attacks of the second red-team round on the limits a sandbox lives
// under (cgroups, provider-wide caps) and on what its cgroups reveal.
// Like the others, each test names the threat it covers.

// requireCgroups returns sb's limits if they are cgroup-enforced, and
// skips the test with the reason where they are not (not root, no
// writable cgroups).
func requireCgroups(t *testing.T, sb *compute.Sandbox) []string {
	t.Helper()
	info, err := sb.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The memory limit names the cgroup version that enforces it.
	if !strings.Contains(strings.Join(info.Limits, "\n"), "(cgroup v") {
		t.Skipf("skipped: this sandbox has no cgroups here (not root, or no writable cgroups): %v", info.Limits)
	}
	return info.Limits
}

// Threat: a command's descendants that leave its process tree outliving
// its timeout. A setsid'd shell backgrounds two sleeps and exits: they are
// reparented to the sandbox's pid 1, in a session and process group of
// their own, so neither parent links nor the process group find them. They
// are in the command's cgroup, which they cannot leave: when Run returns
// after the timeout, they are gone (no polling: the kill is complete).
func TestAttackTimeoutMissesEscapedDescendants(t *testing.T) {
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	limits := requireCgroups(t, sb)
	if !strings.Contains(strings.Join(limits, "\n"), "commands: each in a cgroup of its own") {
		t.Fatalf("Info does not say commands are killed by cgroup membership: %v", limits)
	}
	ctx := context.Background()
	res, err := sb.Run(ctx, []string{"sh", "-c", "setsid sh -c 'sleep 777 & sleep 778 & exit'; sleep 100"}, &compute.RunOptions{Timeout: time.Second})
	if res == nil || res.ExitCode != compute.ExitCodeTimeout {
		t.Fatalf("want exit %d, got %+v %v", compute.ExitCodeTimeout, res, err)
	}
	// Zombies (killed, not yet reaped by the agent) have an empty
	// cmdline: only live processes match.
	out := shell(t, sb, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").Stdout
	if strings.Contains(out, "sleep 77") || strings.Contains(out, "sleep 100") {
		t.Fatalf("processes of the timed-out command survived:\n%s", out)
	}
	// The same through an explicit kill of a started command.
	p, err := sb.Start(ctx, []string{"sh", "-c", "setsid sh -c 'sleep 777 & exit'; sleep 100"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Until the escapee runs (a correctness bound, not a performance one).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(shell(t, sb, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").Stdout, "sleep 777"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.Kill()
			t.Fatal("the command's escapee never started")
		}
	}
	p.Kill()
	p.Wait()
	if out := shell(t, sb, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").Stdout; strings.Contains(out, "sleep 777") {
		t.Fatalf("a process of the killed command survived:\n%s", out)
	}
	// Background processes of a command that ends on its own live on (a
	// server started by one command, used by the next): that stays so.
	shell(t, sb, "setsid sh -c 'sleep 779 &' </dev/null >/dev/null 2>&1")
	if out := shell(t, sb, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").Stdout; !strings.Contains(out, "sleep 779") {
		t.Errorf("a background process of a command that exited normally was killed:\n%s", out)
	}
}

// sandboxCgroup returns the host directory of the one sandbox cgroup this
// test process has in a v1 hierarchy, or "" if there is none or several.
func sandboxCgroup(t *testing.T, hierarchy string) string {
	t.Helper()
	dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/%s/compute-sandboxes/%d-*", hierarchy, os.Getpid()))
	if len(dirs) != 1 {
		return ""
	}
	return dirs[0]
}

// Threat: socket buffers outside the memory limit. On cgroup v1 the kernel
// counts TCP buffer memory apart from a cgroup's memory (one sandbox held
// 1.35 GiB of TCP buffers on its own loopback under a 1 GiB limit). Many
// loopback connections, each sender writing until its buffer is full and
// no receiver reading: what they hold together stays within the limit.
func TestAttackTCPBuffersEscapeMemoryLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: memory limits are cgroups, which need root (without, an explicit MaxMemory is a per-process RLIMIT_AS)")
	}
	const limit = 64 << 20
	sb := newSandboxWith(t, local.Options{Prestart: -1, MaxMemory: limit}, nil)
	requireCgroups(t, sb)
	const conns = 48
	res := python(t, sb, fmt.Sprintf(`import socket
n = %d
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
srv.bind(("127.0.0.1", 0)); srv.listen(n)
clients, servers = [], []
for i in range(n):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 20)
    c.connect(srv.getsockname())
    servers.append(srv.accept()[0])
    c.setblocking(False)
    clients.append(c)
chunk = b"x" * (1 << 20)
total = 0
for _ in range(100000):
    progress = False
    for c in clients:
        try:
            total += c.send(chunk); progress = True
        except BlockingIOError:
            pass
        except OSError as e:
            print("error", e); break
    if not progress:
        break
print(total)`, conns))
	fields := strings.Fields(res.Stdout)
	if len(fields) == 0 {
		t.Fatalf("no output: %+v", res)
	}
	held, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
	if err != nil {
		t.Fatalf("output %q: %v", res.Stdout, err)
	}
	// Every byte sent sits in a buffer (nothing reads), and buffers take
	// at least their payload. The kernel may force one buffer per socket
	// and direction past a limit, so that a connection can make progress.
	slack := int64(conns * 2 * 64 << 10)
	t.Logf("%d connections held %d MiB of TCP buffers under a %d MiB limit", conns, held>>20, limit>>20)
	if held > limit+slack {
		t.Errorf("%d connections held %d MiB of TCP buffers: past the sandbox's %d MiB memory limit", conns, held>>20, limit>>20)
	}
	if dir := sandboxCgroup(t, "memory"); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "memory.kmem.tcp.max_usage_in_bytes"))
		if err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			t.Logf("cgroup v1 TCP memory peak: %d MiB", n>>20)
			if n > limit+slack {
				t.Errorf("the sandbox's TCP memory peaked at %d MiB, past its %d MiB limit", n>>20, limit>>20)
			}
		}
	}
	if res := shell(t, sb, "echo alive"); res.Stdout != "alive\n" {
		t.Fatalf("the sandbox did not survive: %+v", res)
	}
}

// Threat: the host's cgroup layout and the owner's pid leaking into the
// sandbox through /proc/self/cgroup. The cgroup namespace is rooted at the
// sandbox's own cgroup: its processes see "/" (and, for the hierarchy that
// tracks commands, their command's own cgroup below it).
func TestAttackCgroupPathLeak(t *testing.T) {
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	out := shell(t, sb, "cat /proc/self/cgroup; echo; cat /proc/1/cgroup; sh -c 'cat /proc/self/cgroup'").Stdout
	t.Logf("inside:\n%s", out)
	owner := strconv.Itoa(os.Getpid())
	inside := regexp.MustCompile(`^/(cmd-[0-9]+)?$`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			t.Errorf("malformed line %q", line)
			continue
		}
		if !inside.MatchString(f[2]) || strings.Contains(f[2], owner) {
			t.Errorf("cgroup path %q reveals the host's cgroups (want / or /cmd-N)", line)
		}
	}
}

// Threat: a crashed owner's sandbox cgroups staying on the host until some
// later program calls local.New. An owner process creates a sandbox, runs
// commands (so there are per-command cgroups too) and is SIGKILLed;
// local.Sweep removes what it left, and leaves live owners' cgroups alone.
func TestAttackOwnerCrashLeavesCgroups(t *testing.T) {
	if os.Getenv("COMPUTE_TEST_SWEEP_OWNER") == "1" {
		sweepOwnerMain()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: sandbox cgroups need root")
	}
	// A live sandbox of our own, which Sweep must not touch.
	mine := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	requireCgroups(t, mine)
	ownGlob := fmt.Sprintf("/sys/fs/cgroup/*/compute-sandboxes/%d-*", os.Getpid())
	own, _ := filepath.Glob(ownGlob)

	cmd := exec.Command(os.Args[0], "-test.run=^TestAttackOwnerCrashLeavesCgroups$")
	cmd.Env = append(os.Environ(), "COMPUTE_TEST_SWEEP_OWNER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ready string
	if _, err := fmt.Fscan(out, &ready); err != nil || ready != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("owner did not start its sandbox: %q %v", ready, err)
	}
	theirs := fmt.Sprintf("/sys/fs/cgroup/*/compute-sandboxes/%d-*", cmd.Process.Pid)
	if left, _ := filepath.Glob(theirs); len(left) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the owner's sandbox has no cgroups; the check would prove nothing")
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The sandbox's processes die with their owner, asynchronously; only
	// then are its cgroups empty and removable. Sweep until they are gone,
	// within a correctness bound.
	var left []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		local.Sweep()
		if left, _ = filepath.Glob(theirs); len(left) == 0 {
			break
		}
	}
	if len(left) != 0 {
		t.Fatalf("cgroups of a SIGKILLed owner survived local.Sweep: %v", left)
	}
	if still, _ := filepath.Glob(ownGlob); len(still) != len(own) {
		t.Errorf("Sweep touched a live owner's cgroups: before %v, after %v", own, still)
	}
	if res := shell(t, mine, "echo alive"); res.Stdout != "alive\n" {
		t.Errorf("a live sandbox broke after Sweep: %+v", res)
	}
}

func sweepOwnerMain() {
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	sb, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), nil)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	// A background process keeps its command's cgroup in use.
	sb.RunShell(context.Background(), "(setsid sleep 1000 >/dev/null 2>&1 &)", nil)
	fmt.Println("ready")
	time.Sleep(time.Hour)
}

// quotaProvider returns a provider with the given options, closed with
// the test.
func quotaProvider(t *testing.T, opts local.Options) *compute.Compute {
	t.Helper()
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return compute.New(compute.Config{Provider: p})
}

// Threat: sandboxes that together exceed the host (100 sandboxes × 1 GiB ×
// 512 processes on a 23 GiB host with pid_max 32768). Provider-wide caps
// on sandboxes, memory and processes refuse the Create past them with
// ErrQuotaExceeded, naming the cap and how to raise it; prestarted spares
// count, and one is given up rather than refusing a Create it cannot
// serve.
func TestAttackAggregateLimits(t *testing.T) {
	ctx := context.Background()
	quota := func(t *testing.T, err error, cap string) {
		t.Helper()
		if !errors.Is(err, compute.ErrQuotaExceeded) || !strings.Contains(err.Error(), cap) {
			t.Fatalf("want ErrQuotaExceeded naming %s, got %v", cap, err)
		}
	}
	t.Run("MaxSandboxes", func(t *testing.T) {
		c := quotaProvider(t, local.Options{MaxSandboxes: 2, Prestart: -1})
		a, err := c.Create(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(ctx, nil); err != nil {
			t.Fatal(err)
		}
		_, err = c.Create(ctx, nil)
		quota(t, err, "MaxSandboxes")
		if !strings.Contains(err.Error(), "local.Options.MaxSandboxes") {
			t.Errorf("the error does not say how to raise the cap: %v", err)
		}
		a.Destroy(ctx)
		if _, err := c.Create(ctx, nil); err != nil {
			t.Fatalf("Create after a Destroy freed a place: %v", err)
		}
	})
	t.Run("MaxTotalMemory", func(t *testing.T) {
		// The default 1 GiB each (an explicit MaxMemory would be an
		// RLIMIT_AS where cgroups are unavailable).
		c := quotaProvider(t, local.Options{MaxTotalMemory: 5 << 29, Prestart: -1})
		for range 2 {
			if _, err := c.Create(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Create(ctx, nil)
		quota(t, err, "MaxTotalMemory")
	})
	t.Run("MaxTotalProcesses", func(t *testing.T) {
		c := quotaProvider(t, local.Options{MaxProcesses: 100, MaxTotalProcesses: 250, Prestart: -1})
		for range 2 {
			if _, err := c.Create(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Create(ctx, nil)
		quota(t, err, "MaxTotalProcesses")
	})
	t.Run("SparesCount", func(t *testing.T) {
		p, err := local.New(local.Options{MaxSandboxes: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c := compute.New(compute.Config{Provider: p})
		if err := p.Warm(ctx); err != nil { // the spare takes the one place
			t.Fatal(err)
		}
		// A Create the spare cannot serve (another network policy) gets
		// the place the spare held.
		sb, err := c.Create(ctx, &compute.CreateOptions{Network: compute.NetworkHost})
		if err != nil {
			t.Fatalf("a Create the spare cannot serve was refused: %v", err)
		}
		_, err = c.Create(ctx, nil)
		quota(t, err, "MaxSandboxes")
		sb.Destroy(ctx)
		if _, err := c.Create(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		c := quotaProvider(t, local.Options{MaxSandboxes: 3, Prestart: -1})
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, refused := 0, 0
		for range 10 {
			wg.Go(func() {
				_, err := c.Create(ctx, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, compute.ErrQuotaExceeded):
					refused++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok != 3 || refused != 7 {
			t.Fatalf("10 concurrent creates under MaxSandboxes 3: %d created, %d refused", ok, refused)
		}
	})
	t.Run("Options", func(t *testing.T) {
		for _, o := range []local.Options{
			{MaxSandboxes: -1},
			{MaxTotalMemory: -1},
			{MaxTotalProcesses: -1},
			{MaxMemory: 2 << 30, MaxTotalMemory: 1 << 30},
			{MaxProcesses: 100, MaxTotalProcesses: 50},
		} {
			if p, err := local.New(o); err == nil {
				p.Close()
				t.Errorf("New(%+v) accepted caps that leave no room for one sandbox", o)
			}
		}
	})
}
