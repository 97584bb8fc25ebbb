//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// The escape suite: hostile code tries to break out of a sandbox or hurt
// the host, and every attempt must fail without harm. (isolation_test.go
// holds the attempts on files, network, processes, environment and
// descriptors; these are the kernel-level and resource ones.)

func python(t *testing.T, sb *compute.Sandbox, code string) *compute.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := sb.RunCode(ctx, code, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil {
		t.Fatalf("%v\n%s", err, code)
	}
	return res
}

// Threat: changing what the sandbox sees (mounting over or remounting the
// read-only system, mounting proc or cgroupfs elsewhere) or entering new
// namespaces, where a user namespace would hand sandboxed code a fresh set
// of capabilities.
func TestEscapeMountAndNamespaces(t *testing.T) {
	sb := newSandbox(t, nil)
	for _, script := range []string{
		"mount -t tmpfs none /tmp",
		"mount -o remount,rw /usr",
		"mount --bind /workspace /usr/bin",
		"umount -l /usr",
		"unshare -U true",
		"unshare -Urm true",
		"unshare -n true",
		"chroot / true",
	} {
		res := shell(t, sb, script+" 2>&1; echo rc=$?")
		if strings.HasSuffix(strings.TrimSpace(res.Stdout), "rc=0") {
			t.Errorf("%q succeeded:\n%s", script, res.Stdout)
		}
	}
	// The same through raw syscalls, so no tool's own checks are involved.
	res := python(t, sb, `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
for name, call in [
    ("unshare(NEWUSER)", lambda: libc.unshare(CLONE_NEWUSER)),
    ("unshare(NEWNS)", lambda: libc.unshare(CLONE_NEWNS)),
    ("mount tmpfs", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    ("setns", lambda: libc.setns(os.open("/proc/self/ns/mnt", os.O_RDONLY), 0)),
    ("pivot_root", lambda: libc.syscall(155, b"/", b"/")),
]:
    r = call()
    print(name, r, ctypes.get_errno())`)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[len(f)-2] != "-1" {
			t.Errorf("raw syscall not refused: %q", line)
		}
	}
}

// Threat: gaining privileges: capabilities of the sandbox's root, setuid
// binaries, or the agent's own (the agent is pid 1 and keeps capabilities
// in the sandbox's namespace).
func TestEscapePrivileges(t *testing.T) {
	sb := newSandbox(t, nil)
	status := shell(t, sb, "cat /proc/self/status").Stdout
	for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("sandboxed process status lacks %q:\n%s", want, status)
		}
	}
	// Capabilities cannot come back through exec of anything: securebits.
	res := shell(t, sb, "sh -c 'grep CapEff /proc/self/status'")
	if !strings.Contains(res.Stdout, "0000000000000000") {
		t.Errorf("a child regained capabilities: %q", res.Stdout)
	}
	// setuid binaries do not raise privileges: /usr is nosuid (an image
	// root: the whole overlay), and no_new_privs is set besides.
	system := "/usr"
	if escapeRoot != nil {
		system = "/"
	}
	if mounts := shell(t, sb, "grep ' "+system+" ' /proc/self/mounts").Stdout; !strings.Contains(mounts, "nosuid") {
		t.Errorf("%s is not mounted nosuid: %q", system, mounts)
	}
	if _, err := os.Stat("/usr/bin/su"); err == nil {
		res := shell(t, sb, "su -c id root </dev/null 2>&1; echo rc=$?")
		if strings.Contains(res.Stdout, "rc=0") {
			t.Errorf("su succeeded: %q", res.Stdout)
		}
	}
	// The agent: cannot be traced, signalled, or read through /proc.
	res = python(t, sb, `import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, 1, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig); print("kill", sig, "ok")
    except OSError as e:
        print("kill", sig, "refused", e.errno)
for p in ("/proc/1/exe", "/proc/1/root/etc/hostname", "/proc/1/environ", "/proc/1/mem"):
    try:
        open(p, "rb").read(1); print("read", p, "ok")
    except OSError as e:
        print("read", p, "refused", e.errno)`)
	if strings.Contains(res.Stdout, " ok") || !strings.Contains(res.Stdout, "ptrace -1") {
		t.Errorf("the agent is reachable from sandboxed code:\n%s", res.Stdout)
	}
}

// Threat: the attack surface behind kernel exploits, and typing into a
// terminal outside (TIOCSTI).
func TestEscapeKernelSurface(t *testing.T) {
	sb := newSandbox(t, nil)
	res := python(t, sb, `import ctypes
libc = ctypes.CDLL(None, use_errno=True)
calls = {"bpf": 321, "perf_event_open": 298, "keyctl": 250, "userfaultfd": 323,
         "io_uring_setup": 425, "kexec_load": 246, "init_module": 175,
         "open_by_handle_at": 304, "clock_settime": 227, "reboot": 169, "swapon": 167}
for name, nr in calls.items():
    print(name, libc.syscall(nr, 0, 0, 0, 0, 0), ctypes.get_errno())
print("TIOCSTI", libc.ioctl(0, 0x5412, b"x"), ctypes.get_errno())`)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "-1" || f[2] != strconv.Itoa(int(syscall.EPERM)) {
			t.Errorf("not refused with EPERM: %q", line)
		}
	}
}

// Threat: hard links and symlinks that point the sandbox (or the host's
// FileSystem calls) at host files.
func TestEscapeLinks(t *testing.T) {
	sb := newSandbox(t, nil)
	res := shell(t, sb, "ln /usr/bin/env /workspace/env-link 2>&1; echo rc=$?")
	if strings.Contains(res.Stdout, "rc=0") {
		t.Errorf("hard link to a host file succeeded: %q", res.Stdout)
	}
	ctx := context.Background()
	fsys := sb.FileSystem()
	// A symlink to the host's root resolves inside the sandbox, where it
	// names the sandbox's own files.
	shell(t, sb, "ln -s / /workspace/root-link && ln -s /proc/1/root /workspace/agent-root")
	for _, p := range []string{"root-link/root/.bashrc", "agent-root/etc/shadow", "../../../../etc/shadow"} {
		if data, err := fsys.ReadFile(ctx, p); err == nil && len(data) > 0 && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadFile(%q) returned %d bytes of something outside", p, len(data))
		}
	}
	// Writing through a link to the system is refused (an image root's
	// system is the sandbox's own, written in its own layer), and the host
	// is untouched.
	if err := fsys.WriteFile(ctx, "root-link/usr/bin/compute-probe", []byte("x")); err == nil && escapeRoot == nil {
		t.Error("WriteFile through a symlink into /usr succeeded")
	}
	if _, err := os.Stat("/usr/bin/compute-probe"); err == nil {
		os.Remove("/usr/bin/compute-probe")
		t.Fatal("a write reached the host's /usr/bin")
	}
}

// Threat: exhausting the host's memory. The offender is killed, the
// sandbox survives and says why.
func TestEscapeMemory(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxMemory: 128 << 20}, nil)
	if info, _ := sb.Info(context.Background()); !strings.Contains(strings.Join(info.Limits, "\n"), "cgroup") {
		t.Skipf("cgroups are not available here (%v); the memory limit is a per-process rlimit", info.Limits)
	}
	res, err := sb.RunCode(context.Background(), "x = bytearray(512 << 20)\nprint('survived')", &compute.CodeOptions{Runtime: compute.Python})
	if res == nil || res.ExitCode != 137 || !errors.Is(err, compute.ErrOutOfMemory) {
		t.Fatalf("want exit 137 and ErrOutOfMemory, got %+v, %v", res, err)
	}
	// Files live in memory: the disk quota (half the memory limit by
	// default) stops a writer before it can starve the sandbox.
	res, err = sb.RunShell(context.Background(), "{ head -c 300M /dev/zero > /tmp/fill; } 2>&1; echo rc=$?", nil)
	if err != nil || !strings.Contains(res.Stdout, "No space left on device") {
		t.Errorf("writing 300 MiB under a 128 MiB memory limit: want ENOSPC, got %+v, %v", res, err)
	}
	shell(t, sb, "rm -f /tmp/fill")
	if res := shell(t, sb, "echo alive"); res.Stdout != "alive\n" {
		t.Fatalf("sandbox did not survive: %+v", res)
	}
}

// Threat: filling the host's disk. The sandbox's writable places are
// memory file systems with a size cap: writing past it fails with ENOSPC
// inside, and the host's disk is not involved.
func TestEscapeDisk(t *testing.T) {
	sb := newSandboxWith(t, local.Options{DiskSize: 32 << 20}, nil)
	var before syscall.Statfs_t
	syscall.Statfs(os.TempDir(), &before)
	for _, dir := range []string{"/workspace", "/tmp", "/"} {
		res := shell(t, sb, fmt.Sprintf("dd if=/dev/zero of=%s/fill bs=1M count=64 2>&1; echo rc=$?; rm -f %[1]s/fill", strings.TrimSuffix(dir, "/")))
		if !strings.Contains(res.Stdout, "No space left on device") {
			t.Errorf("filling %s: want ENOSPC, got %q", dir, res.Stdout)
		}
	}
	// Through the FileSystem API as well, with the error kept.
	err := sb.FileSystem().WriteFile(context.Background(), "/workspace/big", make([]byte, 64<<20))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("WriteFile past the cap: want ENOSPC, got %v", err)
	}
}

// Threat: a fork bomb. It fails inside; the host and the sandbox go on.
func TestEscapeForkBomb(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxProcesses: 64}, nil)
	// The children wait on a pipe whose writing end only the bomb holds, so
	// they all exit when it does.
	res, err := sb.RunCode(context.Background(), `import os
r, w = os.pipe()
n = 0
try:
    while True:
        if os.fork() == 0:
            os.close(w); os.read(r, 1); os._exit(0)
        n += 1
except OSError as e:
    print("stopped after", n, e.strerror)`, &compute.CodeOptions{Runtime: compute.Python, Timeout: time.Minute})
	if err != nil || !strings.Contains(res.Stdout, "stopped after") {
		t.Fatalf("fork bomb was not stopped: %+v %v", res, err)
	}
	// The sandbox goes on once the bomb's processes are gone (they exit
	// and are reaped asynchronously: retry within a correctness bound).
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := sb.RunShell(context.Background(), "echo ok", nil)
		if err == nil && res.Stdout == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not recover from the fork bomb: %+v, %v", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Threat: one sandbox's busy loop starving the others (and the host). The
// CPU quota throttles it; the kernel's own counters show it.
func TestEscapeCPU(t *testing.T) {
	// A tenth of a CPU, so that the busy loops exceed the quota even when
	// the machine is loaded by other tests and they get little CPU at all.
	sb := newSandboxWith(t, local.Options{MaxCPU: 0.1}, nil)
	if info, _ := sb.Info(context.Background()); !strings.Contains(strings.Join(info.Limits, "\n"), "cpu 0.10 CPUs (cgroup") {
		t.Skipf("no CPU quota here: %v", info.Limits)
	}
	// Three busy processes for a second each.
	res := shell(t, sb, `for i in 1 2 3; do timeout 1 sh -c 'while :; do :; done' & done; wait; echo done`)
	if res.Stdout != "done\n" {
		t.Fatalf("%+v", res)
	}
	if throttledPeriods(t) == 0 {
		t.Fatal("three busy processes under a 0.1-CPU quota were never throttled")
	}
}

// throttledPeriods sums nr_throttled over this process's sandbox cgroups.
func throttledPeriods(t *testing.T) int {
	root := "/sys/fs/cgroup/cpu/compute-sandboxes"
	if _, err := os.Stat(root); err != nil {
		root = "/sys/fs/cgroup/compute-sandboxes"
	}
	ents, _ := os.ReadDir(root)
	total := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), strconv.Itoa(os.Getpid())+"-") {
			continue
		}
		b, _ := os.ReadFile(root + "/" + e.Name() + "/cpu.stat")
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "nr_throttled" {
				n, _ := strconv.Atoi(f[1])
				total += n
			}
		}
	}
	return total
}

// Threat: flooding the host with output. 1 GiB printed costs the host only
// the capture cap.
func TestEscapeOutputFlood(t *testing.T) {
	sb := newSandbox(t, nil)
	var m1 runtimeMem
	m1.read()
	res := shell(t, sb, "head -c 1G /dev/zero")
	var m2 runtimeMem
	m2.read()
	if len(res.Stdout) != compute.DefaultMaxOutput || !res.Truncated {
		t.Fatalf("captured %d bytes, truncated=%v", len(res.Stdout), res.Truncated)
	}
	if grew := m2.rss - m1.rss; grew > 256<<20 {
		t.Errorf("host memory grew by %d MiB for 1 GiB of output", grew>>20)
	}
}

type runtimeMem struct{ rss int64 }

func (m *runtimeMem) read() {
	b, _ := os.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	if len(f) > 1 {
		pages, _ := strconv.ParseInt(f[1], 10, 64)
		m.rss = pages * int64(os.Getpagesize())
	}
}

// Threat: exhausting the host's file table. Each process may open only
// MaxOpenFiles files.
func TestEscapeOpenFiles(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxOpenFiles: 256}, nil)
	res := python(t, sb, `files = []
try:
    while True:
        files.append(open("/dev/null"))
except OSError as e:
    print(len(files), e.strerror)`)
	f := strings.Fields(res.Stdout)
	n, _ := strconv.Atoi(f[0])
	if n >= 256 || !strings.Contains(res.Stdout, "Too many open files") {
		t.Fatalf("opened %s under a limit of 256", res.Stdout)
	}
}

// Threat: a sandbox nobody destroys living forever. Its lifetime ends it:
// its processes die, it is gone from the provider, and a held handle
// reports it stopped.
func TestLifetime(t *testing.T) {
	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	sb, err := c.Create(ctx, &compute.CreateOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	uid := sandboxHostUID(t, sb)
	res, err := sb.RunCommand(ctx, "sleep", "60")
	if err == nil || !errors.Is(err, compute.ErrStopped) {
		t.Fatalf("a command outliving its sandbox: want ErrStopped, got %+v, %v", res, err)
	}
	if _, err := c.Get(ctx, sb.ID()); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Get after the lifetime: want ErrNotFound, got %v", err)
	}
	if info, err := sb.Info(ctx); err != nil || info.Status != compute.StatusStopped {
		t.Errorf("Info after the lifetime: want stopped, got %+v, %v", info, err)
	}
	// The kernel ends the sandbox's processes as its pid 1 exits, a moment
	// after the command's connection breaks: poll, within a bound.
	n := hostProcessesOf(uid)
	for deadline := time.Now().Add(10 * time.Second); n != 0 && time.Now().Before(deadline); n = hostProcessesOf(uid) {
		time.Sleep(50 * time.Millisecond)
	}
	if n != 0 {
		t.Errorf("%d processes outlived the sandbox's lifetime", n)
	}
}
