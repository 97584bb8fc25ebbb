//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// Each test here is an attempt, from inside a sandbox, to get at something
// of the host's; every attempt must fail. Each names the threat it covers.

func newSandbox(t *testing.T, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	return newSandboxWith(t, local.Options{}, opts)
}

// newSandboxWith creates a sandbox on a provider of its own, both cleaned
// up with the test.
func newSandboxWith(t *testing.T, popts local.Options, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	if escapeRoot != nil && (opts == nil || opts.Image == "") {
		// TestImageRootEscapeSuite: the same attack on an image root.
		o := compute.CreateOptions{}
		if opts != nil {
			o = *opts
		}
		o.Image = escapeRoot.ref
		opts = &o
		popts.ImageStore = escapeRoot.store
	}
	p, err := local.New(popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func shell(t *testing.T, sb *compute.Sandbox, script string) *compute.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := sb.RunShell(ctx, script, nil)
	if err != nil {
		t.Fatalf("%q: %v", script, err)
	}
	return res
}

// sandboxHostUID reads the host uid the sandbox's code runs as from its
// uid_map. Where the agent has a uid of its own (as root), it is the next
// one: the map has 2 ids.
func sandboxHostUID(t *testing.T, sb *compute.Sandbox) int {
	t.Helper()
	res := shell(t, sb, "cat /proc/self/uid_map")
	f := strings.Fields(res.Stdout)
	if len(f) != 3 || f[0] != "0" || (f[2] != "1" && f[2] != "2") {
		t.Fatalf("uid_map = %q, want one line mapping 0 (and the agent's 1) to host uids", res.Stdout)
	}
	uid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// Threat: sandboxed code acting as host root (writing root-owned files,
// signalling host processes).
func TestRunsAsUnprivilegedHostUID(t *testing.T) {
	sb := newSandbox(t, nil)
	uid := sandboxHostUID(t, sb)
	if uid == 0 {
		t.Fatal("sandbox root is mapped to host uid 0")
	}
	if os.Geteuid() != 0 && uid != os.Geteuid() {
		t.Fatalf("unprivileged caller: sandbox uid %d, want the caller's %d", uid, os.Geteuid())
	}
	if os.Geteuid() == 0 && uid < 65536 {
		t.Fatalf("sandbox host uid %d is in the range of real users", uid)
	}
}

// Threat: reading host files outside the sandbox: secrets, the project
// checkout, root's home, the test's own temp dir.
func TestCannotReadHostFiles(t *testing.T) {
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret.txt")
	if err := os.WriteFile(secret, []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	sb := newSandbox(t, nil)
	for _, p := range []string{secret, secretDir, wd, "/root", "/etc/shadow", "/etc/gshadow", "/home", "/var", "/run", "/sys/kernel", "/work"} {
		res := shell(t, sb, fmt.Sprintf("cat %q 2>&1 || ls %q 2>&1", p, p))
		if res.ExitCode == 0 {
			t.Errorf("sandbox could read %s:\n%s", p, res.Stdout)
		}
		if strings.Contains(res.Stdout, "host-secret") {
			t.Errorf("secret leaked through %s", p)
		}
	}
	// Through the FileSystem API too.
	if _, err := sb.FileSystem().ReadFile(context.Background(), secret); err == nil {
		t.Errorf("FileSystem().ReadFile(%s) succeeded", secret)
	}
	// ../ and symlinks resolve inside the sandbox's own root.
	res := shell(t, sb, fmt.Sprintf("ln -s %q link && cat link/secret.txt; cat ../../..%s", secretDir, secret))
	if strings.Contains(res.Stdout, "host-secret") {
		t.Errorf("secret leaked through a symlink or ../: %q", res.Stdout)
	}
	if _, err := sb.FileSystem().ReadFile(context.Background(), "link/secret.txt"); err == nil {
		t.Error("FileSystem().ReadFile through a symlink to a host dir succeeded")
	}
}

// Threat: modifying the host system through the read-only binds. (The
// sandbox's own root, /etc copies included, is a private writable tmpfs:
// writes there must simply never reach the host.)
func TestCannotWriteHostSystem(t *testing.T) {
	sb := newSandbox(t, nil)
	for _, p := range []string{"/etc/compute-probe", "/compute-probe"} {
		shell(t, sb, "echo x > "+p)
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("a write to the sandbox's %s reached the host", p)
		}
	}
	for _, p := range []string{"/usr/bin/compute-probe", "/bin/compute-probe", "/usr/lib/compute-probe"} {
		res := shell(t, sb, "echo x > "+p+" 2>&1; mkdir "+p+".d 2>&1")
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("sandbox created host file %s", p)
		}
		if _, err := os.Stat(p + ".d"); err == nil {
			os.Remove(p + ".d")
			t.Errorf("sandbox created host dir %s.d", p)
		}
		// An image root's /usr is the sandbox's own: writes land in its
		// writable layer (TestImageRoot checks the cache is unchanged).
		if !strings.Contains(res.Stdout, "Read-only file system") && escapeRoot == nil {
			t.Errorf("writing %s: want a read-only error, got %q", p, res.Stdout)
		}
	}
	// Even remounting /usr read-write (root in its own namespace may) must
	// not make host files writable: the sandbox's uid does not own them.
	before, err := os.Stat("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3 on this host to probe")
	}
	res := shell(t, sb, "mount -o remount,rw /usr 2>&1; touch /usr/bin/python3 && echo WROTE")
	after, _ := os.Stat("/usr/bin/python3")
	if (strings.Contains(res.Stdout, "WROTE") && escapeRoot == nil) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("sandbox modified /usr/bin/python3 after a remount: %q", res.Stdout)
	}
	t.Logf("remount attempt: %s", strings.TrimSpace(res.Stdout))
}

// Threat: reaching services on the host's loopback (databases, metadata
// endpoints, the compute server itself). The positive control proves the
// probe would have noticed a connection.
func TestNoNetworkByDefault(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	probe := fmt.Sprintf(`import socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", %d)); print("connected")
except OSError as e:
    print("refused", e)`, port)

	sb := newSandbox(t, nil)
	res, err := sb.RunCode(context.Background(), probe, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Stdout, "connected") || len(accepted) > 0 {
		t.Fatalf("sandbox reached the host's loopback listener: %q", res.Stdout)
	}
	if res := shell(t, sb, "cat /proc/net/dev"); strings.Count(res.Stdout, ":") != 1 || !strings.Contains(res.Stdout, "lo:") {
		t.Errorf("sandbox sees interfaces beyond lo:\n%s", res.Stdout)
	}
	// The sandbox's own loopback works: a server and a client inside.
	loop := `import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
threading.Thread(target=lambda: srv.accept()[0].sendall(b"pong"), daemon=True).start()
c = socket.create_connection(srv.getsockname()); print(c.recv(4).decode())`
	if res, err := sb.RunCode(context.Background(), loop, nil); err != nil || strings.TrimSpace(res.Stdout) != "pong" {
		t.Errorf("loopback inside the sandbox: %+v %v", res, err)
	}

	// Positive control: with the network asked for, the same probe connects.
	open := newSandbox(t, &compute.CreateOptions{Network: compute.NetworkHost})
	res, err = open.RunCode(context.Background(), probe, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil || !strings.Contains(res.Stdout, "connected") {
		t.Fatalf("with NetworkHost the probe should connect: %+v %v", res, err)
	}
}

// Threat: seeing or signalling host processes.
func TestSeesOnlyItsOwnProcesses(t *testing.T) {
	sb := newSandbox(t, nil)
	res := shell(t, sb, `for p in /proc/[0-9]*; do echo "${p#/proc/} $(cat $p/comm 2>/dev/null)"; done; kill -0 `+strconv.Itoa(os.Getpid())+` 2>&1 && echo KILLABLE`)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) > 6 {
		t.Errorf("sandbox sees %d processes, want only its own:\n%s", len(lines), res.Stdout)
	}
	if !strings.HasPrefix(lines[0], "1 ") {
		t.Errorf("pid 1 should be the sandbox's agent: %q", lines[0])
	}
	if strings.Contains(res.Stdout, "KILLABLE") {
		t.Errorf("sandbox can signal host pid %d", os.Getpid())
	}
	if strings.Contains(res.Stdout, filepath.Base(os.Args[0])) {
		t.Errorf("sandbox sees the host test process:\n%s", res.Stdout)
	}
}

// Threat: credentials and configuration leaking through the environment.
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("MODAL_TOKEN_ID", "ak-leak-check")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "leak-check")
	sb := newSandbox(t, &compute.CreateOptions{Env: map[string]string{"MINE": "1"}})
	res := shell(t, sb, "env")
	if strings.Contains(res.Stdout, "leak-check") {
		t.Fatalf("host environment leaked:\n%s", res.Stdout)
	}
	var keys []string
	for _, kv := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	want := map[string]bool{"PATH": true, "HOME": true, "LANG": true, "USER": true, "PYTHONUNBUFFERED": true, "MINE": true, "PWD": true, "SHLVL": true, "_": true}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected variable %s in the sandbox's environment", k)
		}
	}
	if !strings.Contains(res.Stdout, "HOME="+local.WorkDir) {
		t.Errorf("HOME is not the sandbox's work dir:\n%s", res.Stdout)
	}
}

// Threat: host file descriptors (sockets, files) inherited by sandboxed
// code. A descriptor opened without close-on-exec, as C libraries do,
// must not reach it.
func TestNoInheritedDescriptors(t *testing.T) {
	fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0) // no O_CLOEXEC on purpose
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	sb := newSandbox(t, nil)
	res := shell(t, sb, "ls -l /proc/self/fd")
	t.Log(res.Stdout)
	fds := strings.Fields(shell(t, sb, "ls /proc/self/fd").Stdout)
	// ls itself holds one descriptor for the directory it lists.
	if len(fds) > 4 {
		t.Fatalf("sandboxed process has descriptors %v, want only 0-2 (and ls's own)", fds)
	}
}

// Threat: one sandbox reading or changing another's files.
func TestSandboxesDoNotShareFiles(t *testing.T) {
	a, b := newSandbox(t, nil), newSandbox(t, nil)
	ctx := context.Background()
	if err := a.FileSystem().WriteFile(ctx, "/workspace/a-secret", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := a.FileSystem().WriteFile(ctx, "/tmp/a-secret", []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/workspace/a-secret", "/tmp/a-secret"} {
		if ok, _ := b.FileSystem().Exists(ctx, p); ok {
			t.Errorf("sandbox b sees sandbox a's %s", p)
		}
	}
}

// Threat: processes surviving Destroy (daemons that double-fork and
// setsid, processes ignoring SIGTERM) and files left behind.
func TestDestroyLeavesNothing(t *testing.T) {
	// Only this process's staging directories, and no sandbox prestarted
	// behind the test's back: other test processes create sandboxes too.
	staging := filepath.Join(os.TempDir(), fmt.Sprintf("compute-root-%d-*", os.Getpid()))
	stagingBefore, _ := filepath.Glob(staging)
	cgroups := fmt.Sprintf("/sys/fs/cgroup/*/compute-sandboxes/%d-*", os.Getpid())
	cgroupsBefore, _ := filepath.Glob(cgroups)
	sb := newSandboxWith(t, local.Options{Prestart: -1}, nil)
	uid := sandboxHostUID(t, sb)
	ctx := context.Background()
	res, err := sb.RunShell(ctx, `(setsid sh -c 'trap "" TERM; while :; do sleep 1; done' >/dev/null 2>&1 &) ; echo started`, nil)
	if err != nil || !strings.Contains(res.Stdout, "started") {
		t.Fatalf("%+v %v", res, err)
	}
	if n := hostProcessesOf(uid); n == 0 {
		t.Fatal("found no sandbox processes on the host before Destroy; the check below would prove nothing")
	}
	if during, _ := filepath.Glob(cgroups); os.Geteuid() == 0 && len(during) <= len(cgroupsBefore) {
		t.Errorf("running as root, the sandbox has no cgroup (%v)", during)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if n := hostProcessesOf(uid); n != 0 {
		t.Fatalf("%d processes of sandbox uid %d survived Destroy", n, uid)
	}
	stagingAfter, _ := filepath.Glob(staging)
	if len(stagingAfter) > len(stagingBefore) {
		t.Errorf("staging directories left behind: %v", stagingAfter)
	}
	if cgroupsAfter, _ := filepath.Glob(cgroups); len(cgroupsAfter) > len(cgroupsBefore) {
		t.Errorf("cgroups left behind: %v", cgroupsAfter)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

// hostProcessesOf counts host processes running as uid.
func hostProcessesOf(uid int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				n++
			}
		}
	}
	return n
}

// Threat: sandboxes outliving a crashed owner. A child process creates a
// sandbox running a daemon, then is SIGKILLed; the sandbox must die with it.
func TestOwnerDeathKillsSandbox(t *testing.T) {
	if os.Getenv("COMPUTE_TEST_OWNER") == "1" {
		ownerMain()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs a distinct sandbox uid to find the sandbox's processes on the host; runs as root (as CI does)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerDeathKillsSandbox$")
	cmd.Env = append(os.Environ(), "COMPUTE_TEST_OWNER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var uid int
	if _, err := fmt.Fscan(out, &uid); err != nil {
		cmd.Process.Kill()
		t.Fatalf("owner did not report its sandbox: %v", err)
	}
	if hostProcessesOf(uid) == 0 {
		t.Fatal("the owner's sandbox has no processes; the check would prove nothing")
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The kernel delivers the death signal asynchronously; give it a
	// generous bound (a correctness bound, not a performance one).
	deadline := time.Now().Add(30 * time.Second)
	for hostProcessesOf(uid) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox processes of uid %d outlived their owner", uid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ownerMain() {
	p, err := local.New(local.Options{})
	if err != nil {
		fmt.Println(-1)
		return
	}
	sb, err := compute.New(compute.Config{Provider: p}).Create(context.Background(), nil)
	if err != nil {
		fmt.Println(-1)
		return
	}
	sb.RunShell(context.Background(), "(setsid sleep 1000 >/dev/null 2>&1 &)", nil)
	res, _ := sb.RunShell(context.Background(), "cat /proc/self/uid_map", nil)
	f := strings.Fields(res.Stdout)
	fmt.Println(f[1])
	time.Sleep(time.Hour)
}

// Threat: a command's descendants outliving its timeout.
func TestTimeoutKillsDescendants(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	res, err := sb.Run(ctx, []string{"sh", "-c", "sh -c 'sleep 300 & sleep 300' & setsid sleep 300 & sleep 300"}, &compute.RunOptions{Timeout: time.Second})
	if res == nil || res.ExitCode != compute.ExitCodeTimeout {
		t.Fatalf("want exit 124, got %+v %v", res, err)
	}
	// Killed processes linger as zombies until the agent reaps them, which
	// the kernel and the agent do asynchronously: poll, within a bound.
	var out *compute.Result
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out = shell(t, sb, "cat /proc/[0-9]*/comm")
		if !strings.Contains(out.Stdout, "sleep") || time.Now().After(deadline) {
			break
		}
	}
	if strings.Contains(out.Stdout, "sleep") {
		t.Fatalf("sleep processes survived the timeout:\n%s", out.Stdout)
	}
}

// Threat: a command flooding the host's memory with output.
func TestCapturedOutputIsCapped(t *testing.T) {
	sb := newSandbox(t, nil)
	res := shell(t, sb, "head -c 20000000 /dev/zero; echo done >&2")
	if len(res.Stdout) != compute.DefaultMaxOutput || !res.Truncated {
		t.Fatalf("captured %d bytes (truncated=%v), want the %d byte cap", len(res.Stdout), res.Truncated, compute.DefaultMaxOutput)
	}
	if res.Stderr != "done\n" {
		t.Fatalf("stderr = %q", res.Stderr)
	}
}

// Threat: a fork bomb taking the host down.
func TestProcessLimit(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxProcesses: 32}, nil)
	res, err := sb.RunShell(context.Background(), "for i in $(seq 100); do sleep 5 & done 2>&1 | head -1; echo after", &compute.RunOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stdout, "fork") && !strings.Contains(res.Stdout, "Resource temporarily unavailable") {
		t.Fatalf("100 processes under a 32 process limit did not fail: %q", res.Stdout)
	}
}

// Threat: a sandbox allowed one API reaching anything else. Listeners on
// 127.0.0.2 (allowed) and 127.0.0.3 (not) stand for the API and the rest
// of the world; the proxy that enforces the list runs in the host.
func TestNetworkAllowlist(t *testing.T) {
	serve := func(addr, body string) (string, chan struct{}) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		hits := make(chan struct{}, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				hits <- struct{}{}
				go func() {
					defer c.Close()
					buf := make([]byte, 4096)
					c.Read(buf)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
				}()
			}
		}()
		return ln.Addr().String(), hits
	}
	allowed, allowedHits := serve("127.0.0.2:0", "from-allowed")
	denied, deniedHits := serve("127.0.0.3:0", "from-denied")

	sb := newSandbox(t, &compute.CreateOptions{NetworkAllow: []string{allowed}})
	probe := `import urllib.request, http.client, socket, sys
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except Exception as e:
        return "error: " + str(e)
print("http-allowed", get("http://%s/"))
print("http-denied", get("http://%s/"))
# CONNECT, as HTTPS clients do, then plain HTTP through the tunnel.
c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
c.set_tunnel("%s")
try:
    c.request("GET", "/"); print("connect-allowed", c.getresponse().read().decode())
except Exception as e:
    print("connect-allowed error:", e)
c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
c.set_tunnel("%s")
try:
    c.request("GET", "/"); print("connect-denied", c.getresponse().read().decode())
except Exception as e:
    print("connect-denied error:", e)
# Around the proxy: straight to the allowed address.
host, port = "%s".rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), timeout=5); print("direct connected")
except OSError as e:
    print("direct refused", e)`
	code := fmt.Sprintf(probe, allowed, denied, allowed, denied, allowed)
	res, err := sb.RunCode(context.Background(), code, &compute.CodeOptions{Runtime: compute.Python})
	if err != nil {
		t.Fatal(err)
	}
	out := res.Stdout
	t.Log(out)
	for _, want := range []string{"http-allowed from-allowed", "connect-allowed from-allowed", "direct refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s%s", want, out, res.Stderr)
		}
	}
	for _, bad := range []string{"from-denied", "direct connected"} {
		if strings.Contains(out, bad) {
			t.Errorf("got %q:\n%s", bad, out)
		}
	}
	if len(deniedHits) != 0 {
		t.Errorf("the denied listener was reached %d times", len(deniedHits))
	}
	if len(allowedHits) != 2 {
		t.Errorf("the allowed listener was reached %d times, want 2 (one plain, one tunnelled)", len(allowedHits))
	}
	info, _ := sb.Info(context.Background())
	if !strings.Contains(strings.Join(info.Limits, "\n"), "network: only "+allowed) {
		t.Errorf("Info does not describe the allowlist: %v", info.Limits)
	}
}

// A GPU request on a machine without one fails clearly instead of giving
// a sandbox without the GPU; where the host has NVIDIA devices, they are
// bound in (checked on GPU machines; skipped elsewhere).
func TestGPURequest(t *testing.T) {
	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	devs, _ := filepath.Glob("/dev/nvidia*")
	sb, err := c.Create(context.Background(), &compute.CreateOptions{GPU: "any"})
	if len(devs) == 0 {
		if !errors.Is(err, compute.ErrUnsupported) || !strings.Contains(err.Error(), "no NVIDIA GPU") {
			t.Fatalf("GPU request without a GPU: want a clear ErrUnsupported, got %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	res := shell(t, sb, "ls /dev/nvidia*")
	for _, d := range devs {
		if !strings.Contains(res.Stdout, d) {
			t.Errorf("%s is not in the sandbox: %q", d, res.Stdout)
		}
	}
}

// A sandbox whose agent dies on its own (killed from outside, say) is
// reported as failed, leaves the provider, and frees its cgroup.
func TestAgentDeath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to find and kill the agent by its host uid")
	}
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	cgroups := fmt.Sprintf("/sys/fs/cgroup/*/compute-sandboxes/%d-*", os.Getpid())
	before, _ := filepath.Glob(cgroups)
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	uid := sandboxHostUID(t, sb)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents { // every process of the sandbox's uids: the agent's (uid+1) and its code's
		b, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		if strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t", uid)) || strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t", uid+1)) {
			pid, _ := strconv.Atoi(e.Name())
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(30 * time.Second) // a correctness bound
	for {
		info, _ := sb.Info(ctx)
		after, _ := filepath.Glob(cgroups)
		_, getErr := c.Get(ctx, sb.ID())
		if info.Status == compute.StatusError && len(after) == len(before) && errors.Is(getErr, compute.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the agent's death: status %s, cgroups %v (before %v), Get: %v", info.Status, after, before, getErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := sb.RunCommand(ctx, "true"); !errors.Is(err, compute.ErrStopped) {
		t.Errorf("a command in a dead sandbox: want ErrStopped, got %v", err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("Destroy of a dead sandbox: %v", err)
	}
}
