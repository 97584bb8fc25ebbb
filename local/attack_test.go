//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Attacks of the second red-team round (each broke an earlier version):
// what hostile code, or a hostile caller of the API, tried, and what must
// hold now. The first round's attacks are in escape_test.go and
// isolation_test.go.

// hostDirFD opens a host directory holding a secret file the way a
// careless parent does (no close-on-exec) at a fixed high descriptor
// number, so a sandbox agent started afterwards inherits it.
func hostDirFD(t *testing.T) (dir string, fd int) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	raw, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0) // no O_CLOEXEC on purpose
	if err != nil {
		t.Fatal(err)
	}
	fd = 77
	if err := syscall.Dup2(raw, fd); err != nil {
		t.Fatal(err)
	}
	syscall.Close(raw)
	t.Cleanup(func() { syscall.Close(fd) })
	return dir, fd
}

// Threat: host files through a descriptor the owner leaked to the agent
// (a shell's "9<dir", socket activation). The file API and a command's
// working directory used to follow /proc/self/fd/N (and /proc/1/fd/N,
// /dev/fd/N, a symlink planted to them) into the host directory.
func TestAttackInheritedHostDescriptor(t *testing.T) {
	dir, fd := hostDirFD(t)
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	ctx := context.Background()
	fsys := sb.FileSystem()
	n := fmt.Sprint(fd)
	shell(t, sb, "ln -s /proc/self/fd/"+n+" /workspace/planted; ln -s /proc/1/fd/"+n+" /workspace/planted1")
	for _, p := range []string{
		"/proc/self/fd/" + n + "/secret",
		"/proc/self/fd/" + n + "/../../etc/passwd",
		"/proc/1/fd/" + n + "/secret",
		"/dev/fd/" + n + "/secret",
		"/workspace/planted/secret",
		"planted1/secret",
	} {
		if data, err := fsys.ReadFile(ctx, p); err == nil {
			t.Errorf("ReadFile(%q) = %q: read through a host descriptor", p, data)
		}
		if err := fsys.WriteFile(ctx, p+"-written", []byte("x")); err == nil {
			t.Errorf("WriteFile(%q) succeeded", p+"-written")
		}
		if list, err := fsys.ReadDir(ctx, filepath.Dir(p)); err == nil {
			for _, fi := range list {
				if fi.Name == "secret" {
					t.Errorf("ReadDir(%q) lists the host directory", filepath.Dir(p))
				}
			}
		}
		fsys.RemoveAll(ctx, p)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret")); err != nil {
		t.Errorf("the host's file was removed through the sandbox: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the host directory was written through the sandbox: %v", ents)
	}
	for _, d := range []string{"/proc/self/fd/" + n, "/proc/1/fd/" + n, "/dev/fd/" + n, "/workspace/planted"} {
		res, err := sb.Run(ctx, []string{"ls"}, &compute.RunOptions{Dir: d})
		if err == nil && strings.Contains(res.Stdout, "secret") {
			t.Errorf("a command in Dir %q lists the host directory: %q", d, res.Stdout)
		}
	}
	// The agent itself holds no descriptor it did not open: nothing at
	// the leaked number, and nothing of the host's anywhere.
	res := shell(t, sb, "ls -l /proc/1/fd/ 2>&1; echo; ls /proc/1/fd/"+n+"/ 2>&1")
	if strings.Contains(res.Stdout, "secret") || strings.Contains(res.Stdout, dir) {
		t.Errorf("the agent holds the host descriptor:\n%s", res.Stdout)
	}
	if os.Geteuid() == 0 {
		agent := agentPID(t, sb)
		if _, err := os.Lstat(fmt.Sprintf("/proc/%d/fd/%d", agent, fd)); err == nil {
			t.Errorf("the agent (host pid %d) still holds the inherited descriptor %d", agent, fd)
		}
	}
}

// agentPID finds a sandbox's agent among the host's processes: the one
// process of the agent's own host uid (the code's plus one).
func agentPID(t *testing.T, sb *compute.Sandbox) int {
	t.Helper()
	want := fmt.Sprintf("\nUid:\t%d\t", sandboxHostUID(t, sb)+1)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/status"); err == nil && strings.Contains(string(b), want) {
			var pid int
			fmt.Sscan(e.Name(), &pid)
			return pid
		}
	}
	t.Fatal("no process of the agent's host uid")
	return 0
}

// Threat: sandboxed code turning the kernel on its own agent: raising
// the agent's OOM score (any process of the same uid may), then
// allocating, got the agent OOM-killed and the sandbox with it; prlimit
// on the agent broke the sandbox's operations. The agent runs as a uid of
// its own, so neither is allowed.
func TestAttackAgentProcessAttributes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent has a uid of its own only where the provider runs as root (as CI does); unprivileged, the kernel lets a user namespace map one uid")
	}
	sb := newSandbox(t, nil)
	before := shell(t, sb, "cat /proc/1/oom_score_adj").Stdout
	res := shell(t, sb, `echo 1000 > /proc/1/oom_score_adj; echo rc=$?
prlimit --pid 1 --nofile=4:4; echo rc=$?
prlimit --pid 1 --as=1000000; echo rc=$?
python3 -c 'import resource; resource.prlimit(1, resource.RLIMIT_NOFILE, (4, 4))'; echo rc=$?
kill -STOP 1; echo rc=$?`)
	if strings.Contains(res.Stdout, "rc=0") {
		t.Errorf("sandboxed code changed its agent's process attributes:\n%s%s", res.Stdout, res.Stderr)
	}
	if after := shell(t, sb, "cat /proc/1/oom_score_adj").Stdout; after != before {
		t.Errorf("the agent's oom_score_adj went from %q to %q", before, after)
	}
	// Going over the memory limit kills the code, never the agent.
	ctx := context.Background()
	oom, err := sb.RunCode(ctx, `try:
    open('/proc/self/oom_score_adj', 'w').write('-1000')
except OSError as e:
    print('lower refused', e.errno)
b = []
while True:
    b.append(bytearray(64 << 20))`, &compute.CodeOptions{Runtime: compute.Python})
	if !errors.Is(err, compute.ErrOutOfMemory) {
		t.Fatalf("allocating past the limit: %+v, %v; want ErrOutOfMemory", oom, err)
	}
	if out, err := sb.RunCommand(ctx, "echo", "alive"); err != nil || out.Stdout != "alive\n" {
		t.Fatalf("the sandbox did not survive its code's OOM: %+v, %v", out, err)
	}
}

// Threat: the file API serving the agent's own process entries (its
// executable, its memory map, which name host paths).
func TestAttackAgentProcEntries(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	fsys := sb.FileSystem()
	shell(t, sb, "ln -s /proc/self /workspace/me")
	for _, p := range []string{"/proc/self/exe", "/proc/self/maps", "/proc/1/maps", "/proc/1/environ", "/proc/thread-self/status", "me/maps", "/proc/1/root/etc/hostname"} {
		if data, err := fsys.ReadFile(ctx, p); err == nil {
			t.Errorf("ReadFile(%q) served %d bytes of the agent's process entries", p, len(data))
		}
	}
	if _, err := fsys.Stat(ctx, "/proc/1/exe"); err == nil {
		t.Error("Stat(/proc/1/exe) succeeded")
	}
	// The rest of /proc is a file system like any other.
	if data, err := fsys.ReadFile(ctx, "/proc/cpuinfo"); err != nil || len(data) == 0 {
		t.Errorf("ReadFile(/proc/cpuinfo) = %d bytes, %v", len(data), err)
	}
}

// Threat: a FIFO (or any special file) planted by sandboxed code wedges
// the agent: each read blocked it for good, leaking descriptors and a
// thread, until every operation failed.
func TestAttackSpecialFiles(t *testing.T) {
	sb := newSandbox(t, nil)
	fsys := sb.FileSystem()
	shell(t, sb, "mkfifo /workspace/fifo && python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"/workspace/sock\")'")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard, not a speed limit
	defer cancel()
	for i := range 300 {
		for _, p := range []string{"fifo", "sock", "/dev/zero", "/dev/tty"} {
			_, err := fsys.ReadFile(ctx, p)
			if err == nil {
				t.Fatalf("ReadFile(%q) succeeded", p)
			}
			if ctx.Err() != nil {
				t.Fatalf("ReadFile(%q) blocked (round %d): %v", p, i, err)
			}
			if i == 0 && p == "fifo" {
				t.Log(err)
				if !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("ReadFile of a FIFO: %v, want it to say the file is not a regular one", err)
				}
			}
		}
	}
	// Writing over a FIFO replaces it; it never blocks.
	if err := fsys.WriteFile(ctx, "fifo", []byte("now a file")); err != nil {
		t.Fatal(err)
	}
	if data, err := fsys.ReadFile(ctx, "fifo"); err != nil || string(data) != "now a file" {
		t.Fatalf("after writing over the FIFO: %q, %v", data, err)
	}
	// The sandbox is still whole.
	if res, err := sb.RunCommand(ctx, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("after 1200 refused reads: %+v, %v", res, err)
	}
}

// Threat: none; a valid long name (up to 255 bytes) failed in WriteFile
// because the temporary file's name, built from it, was too long.
func TestWriteLongFileName(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	for _, n := range []int{200, 245, 255} {
		name := strings.Repeat("n", n)
		if err := sb.FileSystem().WriteFile(ctx, name, []byte("x")); err != nil {
			t.Fatalf("%d-byte name: %v", n, err)
		}
		if data, err := sb.FileSystem().ReadFile(ctx, name); err != nil || string(data) != "x" {
			t.Fatalf("%d-byte name read back: %q, %v", n, data, err)
		}
	}
	if err := sb.FileSystem().WriteFile(ctx, strings.Repeat("n", 256), []byte("x")); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("256-byte name: %v, want ENAMETOOLONG", err)
	}
}

// Threat: socket families the network namespace does not cover. AF_VSOCK
// reaches the VM's host and other guests from a sandbox without network;
// the rest is kernel surface no ordinary program uses. And the ioctl rule
// once compared 64 bits where the kernel reads 32, so TIOCSTI with high
// bits set got through.
func TestAttackSocketFamiliesAndIoctlBits(t *testing.T) {
	sb := newSandbox(t, nil)
	res := python(t, sb, `import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
SYS_socket, SYS_socketpair, SYS_ioctl = 41, 53, 16
def call(*args):
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    return r, ctypes.get_errno()
for name, fam in [("vsock", 40), ("packet", 17), ("alg", 38), ("key", 15), ("tipc", 30), ("rds", 21), ("bluetooth", 31), ("can", 29), ("xdp", 44), ("vsock-high-bits", (1 << 32) | 40)]:
    print("deny", name, *call(SYS_socket, fam, socket.SOCK_STREAM, 0))
    print("deny", name + "-pair", *call(SYS_socketpair, fam, socket.SOCK_STREAM, 0, 0))
for name, fam, typ in [("unix", 1, socket.SOCK_STREAM), ("inet", 2, socket.SOCK_STREAM), ("inet6", 10, socket.SOCK_STREAM), ("netlink", 16, socket.SOCK_RAW)]:
    r, e = call(SYS_socket, fam, typ, 0)
    print("allow", name, "ok" if r >= 0 else "refused", e)
buf = ctypes.create_string_buffer(b"x")
for req in (0x5412, (1 << 32) | 0x5412, (0xffffffff << 32) | 0x5412, 0x541C):
    r, e = call(SYS_ioctl, 0, req, ctypes.addressof(buf))
    print("ioctl", hex(req), r, e)`)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		switch {
		case f[0] == "deny" && (f[2] != "-1" || f[3] != fmt.Sprint(int(syscall.EAFNOSUPPORT))):
			t.Errorf("socket family not refused with EAFNOSUPPORT: %q", line)
		case f[0] == "allow" && f[2] != "ok":
			t.Errorf("an ordinary socket family is refused: %q", line)
		case f[0] == "ioctl" && (f[2] != "-1" || f[3] != fmt.Sprint(int(syscall.EPERM))):
			t.Errorf("terminal injection ioctl not refused with EPERM: %q", line)
		}
	}
	t.Log(res.Stdout)
}

// Threat: a host short of descriptors (a low NOFILE limit, or a sandbox
// that makes the host hold many) made the next sandbox's start fail, and
// its cleanup dereferenced nil: a panic that took down every sandbox of
// the process. And for every hard limit below 1024 the agent's own
// setrlimit failed. Each limit runs in a process of its own.
func TestAttackLowDescriptorLimit(t *testing.T) {
	if lim := os.Getenv("COMPUTE_TEST_NOFILE"); lim != "" {
		lowNofileMain(lim)
		return
	}
	for _, lim := range []string{"10", "16", "40", "1000"} {
		// A child that hangs is named, rather than left to the package's
		// timeout, which would not say which limit it was.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAttackLowDescriptorLimit$")
		cmd.Env = append(os.Environ(), "COMPUTE_TEST_NOFILE="+lim)
		cmd.WaitDelay = 10 * time.Second // should anything it started hold its output
		out, _ := cmd.CombinedOutput()
		hung := ctx.Err() != nil
		cancel()
		s := string(out)
		if hung {
			t.Errorf("NOFILE %s: the owner still ran after 3 minutes: it hangs; its output:\n%s", lim, s)
			continue
		}
		if strings.Contains(s, "panic") || !strings.Contains(s, "result:") {
			t.Errorf("NOFILE %s: the owner did not end cleanly:\n%s", lim, s)
			continue
		}
		t.Logf("NOFILE %s: %s", lim, s[strings.Index(s, "result:"):])
		if lim == "1000" && !strings.Contains(s, "result: ok") {
			t.Errorf("NOFILE 1000: want a working sandbox (the agent takes the lower limit):\n%s", s)
		}
	}
}

func lowNofileMain(lim string) {
	var n uint64
	fmt.Sscan(lim, &n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Println("result: setrlimit:", err)
		return
	}
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		fmt.Println("result: New:", err)
		return
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	for range 3 {
		sb, err := c.Create(context.Background(), nil)
		if err != nil {
			fmt.Println("result: Create:", err)
			continue
		}
		res, err := sb.RunCommand(context.Background(), "echo", "ok")
		if err != nil {
			fmt.Println("result: run:", err)
			continue
		}
		fmt.Print("result: ", res.Stdout)
	}
}

// Threat: sandboxed code making the host hold descriptors without bound.
// Each idle connection to the allowlist proxy cost the host one; a few
// thousand filled the host's table, and the next sandbox's start failed
// (and crashed the process, above).
func TestAttackProxyConnectionFlood(t *testing.T) {
	sb := newSandbox(t, &compute.CreateOptions{NetworkAllow: []string{"127.0.0.1:1"}})
	hostFDs := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := hostFDs()
	// 600 idle connections, held open while the host is counted.
	ctx := context.Background()
	proc, err := sb.Start(ctx, []string{"python3", "-c", `import socket, sys, time
conns = []
for i in range(600):
    try:
        conns.append(socket.create_connection(("127.0.0.1", 3128)))
    except OSError as e:
        print("connect", i, e); break
print("open", len(conns)); sys.stdout.flush()
time.sleep(600)`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	var during int
	for range 200 { // until the connections have reached the host
		time.Sleep(50 * time.Millisecond)
		during = hostFDs()
		if during-before >= 100 {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	during = hostFDs()
	t.Logf("host descriptors: %d before, %d with 600 idle proxy connections", before, during)
	if during-before > 200 {
		t.Errorf("600 idle proxy connections made the host hold %d more descriptors", during-before)
	}
	// The sandbox and the host still work.
	if res, err := sb.RunCommand(ctx, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Errorf("sandbox after the flood: %+v, %v", res, err)
	}
	newSandbox(t, nil)
}

// slowWriter takes its time over every write, as a starved reader on a
// loaded machine does.
type slowWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (w *slowWriter) Write(b []byte) (int, error) {
	time.Sleep(300 * time.Millisecond) // longer than the old fixed grace
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// Threat (data loss): output silently dropped. Under load, a command's
// output reader fell behind; once the command had exited, the pipes were
// closed after a fixed grace with its output still in them, and the
// result said exit 0, no truncation, empty stdout.
func TestAttackOutputNotDroppedWhenReaderIsSlow(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	w := &slowWriter{}
	res, err := sb.Run(ctx, []string{"python3", "-c", "import sys; sys.stdout.write('x' * 200000)"}, &compute.RunOptions{Stdout: w})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 200000 || res.Truncated {
		t.Errorf("result: %d bytes of 200000, truncated %v", len(res.Stdout), res.Truncated)
	}
	if w.buf.Len() != 200000 {
		t.Errorf("streamed: %d bytes of 200000", w.buf.Len())
	}
	// A process left holding the pipes does not hold Wait, and what the
	// command wrote still arrives.
	res, err = sb.RunShell(ctx, "echo start; sleep 1000 & echo end", nil)
	if err != nil || res.Stdout != "start\nend\n" {
		t.Errorf("with a background process holding the output: %+v, %v", res, err)
	}
}

// Threat: fingerprinting the host (its kernel's configuration and command
// line, devices, modules, timers, other processes' keys) through /proc.
func TestAttackProcInformationLeaks(t *testing.T) {
	sb := newSandbox(t, nil)
	res := shell(t, sb, `for f in cmdline config.gz kcore keys key-users kallsyms timer_list sched_debug vmallocinfo iomem ioports modules; do
  [ -e /proc/$f ] && echo "$f $(head -c 4096 /proc/$f 2>/dev/null | wc -c)"
done
for d in acpi asound bus driver irq scsi; do
  [ -d /proc/$d ] && echo "$d $(ls -A /proc/$d | wc -l)"
done
echo marker > /proc/sysrq-trigger 2>/dev/null; true`)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "0" {
			t.Errorf("/proc/%s shows the host (%s bytes or entries)", f[0], f[1])
		}
	}
	// What programs need of /proc still works.
	for _, cmd := range []string{"cat /proc/cpuinfo", "cat /proc/meminfo", "cat /proc/self/stat", "cat /proc/self/status", "cat /proc/1/stat"} {
		if out := shell(t, sb, cmd+" >/dev/null; echo rc=$?").Stdout; !strings.Contains(out, "rc=0") {
			t.Errorf("%q fails in the sandbox: %s", cmd, out)
		}
	}
}

// Threat: a huge command line (20 MB) from a caller made the sandbox look
// dead ("not running"); it is the caller's error, E2BIG, and the sandbox
// goes on.
func TestHugeCommandLine(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	for _, n := range []int{200 << 10, 3 << 20, 20 << 20} {
		_, err := sb.RunCommand(ctx, "echo", strings.Repeat("x", n))
		if !errors.Is(err, syscall.E2BIG) {
			t.Errorf("%d-byte argument: %v, want E2BIG", n, err)
		}
	}
	if res, err := sb.RunCommand(ctx, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("after huge command lines: %+v, %v", res, err)
	}
}
