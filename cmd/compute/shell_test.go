//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/modal"
)

// The tests here drive compute shell as a person does: in a terminal
// window, which is a real pseudo-terminal (creack/pty) whose other side
// the test holds, typing keys and reading the screen. None of them
// measures time against a limit: waits end at hang guards, which fail the
// test with what the screen showed.

// screenGuard bounds a wait for text on the screen.
const screenGuard = 90 * time.Second

// window is a terminal window: the master side of a pseudo-terminal, with
// everything shown on it kept so that a test can wait for text. tty is
// the side the CLI runs on, held open here to read its mode.
type window struct {
	t         *testing.T
	ptmx, tty *os.File

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every read
	buf     strings.Builder
	seen    int // how much of buf expect has consumed
	done    chan struct{}
}

// newWindow opens a pseudo-terminal of rows×cols, closed when t ends.
func newWindow(t *testing.T, rows, cols int) *window {
	t.Helper()
	blocking, tty, err := pty.Open()
	if err != nil {
		t.Skipf("skipped: no pseudo-terminals here: %v", err)
	}
	// A master in non-blocking mode is served by Go's poller, so that
	// Close ends a Read in progress and closes the master for real: that
	// is how a window closes (the kernel then hangs the terminal up).
	fd, err := unix.Dup(int(blocking.Fd()))
	blocking.Close()
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	ptmx := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)}); err != nil {
		t.Fatal(err)
	}
	w := &window{t: t, ptmx: ptmx, tty: tty, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			w.mu.Lock()
			w.buf.Write(b[:n])
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		ptmx.Close()
		tty.Close()
		<-w.done
	})
	return w
}

// expect waits until the screen, after the last match, matches re, and
// returns the submatches.
func (w *window) expect(re string) []string {
	w.t.Helper()
	rx := regexp.MustCompile(re)
	guard := time.After(screenGuard)
	for {
		w.mu.Lock()
		out := w.buf.String()[w.seen:]
		if loc := rx.FindStringSubmatchIndex(out); loc != nil {
			m := rx.FindStringSubmatch(out)
			w.seen += loc[1]
			w.mu.Unlock()
			return m
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-guard:
			w.t.Fatalf("the screen did not show %q within %v; after the last match it shows:\n%q", re, screenGuard, out)
		}
	}
}

// screen is everything the window has shown.
func (w *window) screen() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// typeIn types keys ("\r" is Enter, "\x03" Ctrl-C).
func (w *window) typeIn(keys string) {
	w.t.Helper()
	if _, err := w.ptmx.WriteString(keys); err != nil {
		w.t.Fatalf("typing %q: %v", keys, err)
	}
}

// mode is the terminal's mode (what stty -g shows).
func (w *window) mode() unix.Termios {
	w.t.Helper()
	tio, err := unix.IoctlGetTermios(int(w.tty.Fd()), unix.TCGETS)
	if err != nil {
		w.t.Fatal(err)
	}
	return *tio
}

// resize changes the window's size, as dragging its corner does: the
// terminal's foreground process (the CLI) gets SIGWINCH.
func (w *window) resize(rows, cols int) {
	w.t.Helper()
	if err := pty.Setsize(w.ptmx, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)}); err != nil {
		w.t.Fatal(err)
	}
}

// shellProcess is the CLI run as a separate process in a window, as from
// a shell: the window's terminal is its controlling terminal and its
// standard input, output and error.
type shellProcess struct {
	*window
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func startInWindow(t *testing.T, w *window, args ...string) *shellProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCLIHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "COMPUTE_CLI_HELPER=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = w.tty, w.tty, w.tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &shellProcess{window: w, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// exitCode waits for the CLI to exit and returns its exit code.
func (p *shellProcess) exitCode() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(cliHangGuard):
		p.t.Fatalf("the CLI has not exited after %v: it hangs; the screen shows:\n%q", cliHangGuard, p.screen())
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		p.t.Fatalf("the CLI: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// children lists the processes whose parent is pid: the CLI's sandbox
// agents (the local provider's sandbox is a child process).
func children(t *testing.T, pid int) []int {
	t.Helper()
	var out []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := procField(p, 4); ok && ppid == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// procField returns field n (1-based, as in proc(5)) of /proc/PID/stat.
func procField(pid, n int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if n-3 >= len(f) || n < 3 {
		return "", false
	}
	return f[n-3], true
}

// alive reports whether a process still runs (and is not a zombie).
func alive(pid int) bool {
	state, ok := procField(pid, 3)
	return ok && state != "Z"
}

// sandboxProcesses lists the host processes whose command line is exactly
// argv: here, programs the test started in a local sandbox (its processes
// are this machine's, in namespaces of their own).
func sandboxProcesses(t *testing.T, argv ...string) []int {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	var out []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == want && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond until it holds, or fails the test after the guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(screenGuard); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, screenGuard)
		}
	}
}

// checkRestored checks that the window's terminal is back in the mode it
// had before the CLI started.
func checkRestored(t *testing.T, w *window, before unix.Termios) {
	t.Helper()
	if after := w.mode(); after != before {
		t.Errorf("the terminal's mode after compute exited differs from before it started:\nbefore %+v\nafter  %+v", before, after)
	}
}

// prompt is the prompt the tests give the sandbox's shell; the keys that
// set it ("PS1=ready$((1+1))'> '") do not show it, so the screen shows it
// only as the prompt itself.
const (
	setPrompt = "PS1=ready$((1+1))'> '\r"
	prompt    = `ready2> `
)

// A session of compute shell on the local provider, as a person has it.
func TestShell(t *testing.T) {
	t.Parallel()
	w := newWindow(t, 30, 100)
	before := w.mode()
	p := startInWindow(t, w, "shell")

	// The login shell's own prompt, then one of ours.
	w.expect(`[$#] $`)
	raw := w.mode()
	if raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 {
		t.Errorf("during the session the terminal is not in raw mode: lflag %#x", raw.Lflag)
	}
	w.typeIn(setPrompt)
	w.expect(prompt)

	w.typeIn("echo $((6*7))\r")
	w.expect(`[\r\n]42\r\n`)
	w.expect(prompt)

	w.typeIn("tty\r")
	w.expect(`[\r\n]/dev/pts/\d+\r\n`)
	w.expect(prompt)

	// The sandbox's terminal has the window's size, and follows it.
	w.typeIn("stty size\r")
	if m := w.expect(`(\d+ \d+)\r\n`); m[1] != "30 100" {
		t.Errorf("stty size in a 30x100 window: %q", m[1])
	}
	w.expect(prompt)
	w.resize(41, 123)
	// The resize reaches the sandbox a moment after the window changes.
	for deadline := time.Now().Add(screenGuard); ; {
		w.typeIn("stty size\r")
		m := w.expect(`(\d+ \d+)\r\n`)
		w.expect(prompt)
		if m[1] == "41 123" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stty size still shows %q %v after the window became 41x123", m[1], screenGuard)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// An interactive program of its own: Python's REPL.
	w.typeIn("python3\r")
	w.expect(`>>> `)
	w.typeIn("2+3\r")
	w.expect(`[\r\n]5\r\n>>> `)
	w.typeIn("exit()\r")
	w.expect(prompt)

	// Ctrl-C interrupts the program in the foreground, not the shell.
	// The odd duration tells this sleep from any other on the machine.
	dur := fmt.Sprintf("100.%d", time.Now().UnixNano()%1e9)
	w.typeIn("sleep " + dur + "\r")
	waitFor(t, "sleep "+dur+" running in the sandbox", func() bool { return len(sandboxProcesses(t, "sleep", dur)) > 0 })
	w.typeIn("\x03")
	w.expect(prompt)
	w.typeIn("echo after-$?\r")
	w.expect(`[\r\n]after-130\r\n`)
	w.expect(prompt)
	if pids := sandboxProcesses(t, "sleep", dur); len(pids) > 0 {
		t.Errorf("sleep still runs after Ctrl-C: pids %v", pids)
	}

	agents := children(t, p.cmd.Process.Pid)
	if len(agents) == 0 {
		t.Errorf("the CLI has no child process: where does its local sandbox run?")
	}
	w.typeIn("exit 3\r")
	if code := p.exitCode(); code != 3 {
		t.Errorf("exit 3 in the shell: compute exited %d, want 3; the screen shows:\n%q", code, w.screen())
	}
	checkRestored(t, w, before)
	// The sandbox is destroyed: its agent process is gone.
	for _, pid := range agents {
		if alive(pid) {
			t.Errorf("the sandbox's process %d still runs after compute exited", pid)
		}
	}
	if s := w.screen(); strings.Contains(s, "compute:") {
		t.Errorf("compute printed a message: %q", s)
	}
}

// compute shell -- COMMAND runs COMMAND on the terminal instead of the
// shell, with --env and --dir.
func TestShellCommand(t *testing.T) {
	t.Parallel()
	w := newWindow(t, 24, 80)
	before := w.mode()
	p := startInWindow(t, w, "shell", "-e", "GREETING=hi there", "--dir", "/tmp", "--",
		"sh", "-c", `printf '%s in %s on %s\n' "$GREETING" "$(pwd)" "$TERM"; IFS= read -r line; echo "got <$line>"; exit 4`)
	w.expect(`hi there in /tmp on xterm-256color\r\n`)
	w.typeIn("typed text\r")
	w.expect(`got <typed text>\r\n`)
	if code := p.exitCode(); code != 4 {
		t.Errorf("compute exited %d, want 4; the screen shows:\n%q", code, w.screen())
	}
	checkRestored(t, w, before)

	w = newWindow(t, 24, 80)
	before = w.mode()
	p = startInWindow(t, w, "shell", "--", "no-such-command-xyz")
	if code := p.exitCode(); code != exitNotFound {
		t.Errorf("a missing command: compute exited %d, want %d; the screen shows:\n%q", code, exitNotFound, w.screen())
	}
	checkRestored(t, w, before)
}

// The server goes away under compute sandbox shell: compute ends by
// itself, with the terminal restored and a line that says what happened.
func TestSandboxShellServerGone(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--shutdown-timeout", "1s")
	o := cli(t, "", "sandbox", "create", "--server", s.url)
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || id == "" {
		t.Fatalf("sandbox create --server: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	w := newWindow(t, 24, 80)
	before := w.mode()
	p := startInWindow(t, w, "sandbox", "shell", "--server", s.url, id)
	w.expect(`[$#] $`)
	s.stop()
	if code := p.exitCode(); code != exitFailure {
		t.Errorf("compute exited %d after the server went away, want %d", code, exitFailure)
	}
	// What compute wrote before it exited may still be on its way from
	// the terminal to the window's reader: wait for the screen to end
	// with one line from compute, on a line of its own.
	w.expect(`\r\ncompute: [^\r\n]+\r\n$`)
	checkRestored(t, w, before)
}

// The ends compute puts to a session: --lifetime (the sandbox's) and
// --timeout (the session's), each with exit 124 and a line that says
// which, on a line of its own.
func TestShellLifetimeAndTimeout(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		flag, value, says string
	}{
		{"--lifetime", "5s", "\r\ncompute: the sandbox reached the end of its 5s lifetime and was destroyed, with the program; give it longer with --lifetime (e.g. --lifetime 10s)\r\n"},
		{"--timeout", "3s", "\r\ncompute: timed out after 3s\r\n"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			t.Parallel()
			w := newWindow(t, 24, 80)
			before := w.mode()
			p := startInWindow(t, w, "shell", tt.flag, tt.value)
			w.expect(`[$#] $`)
			if code := p.exitCode(); code != exitTimeout {
				t.Errorf("compute shell %s %s: exit %d, want %d", tt.flag, tt.value, code, exitTimeout)
			}
			w.expect(regexp.QuoteMeta(tt.says))
			checkRestored(t, w, before)
		})
	}
}

// SIGTERM or SIGINT sent to compute itself (not typed: in raw mode Ctrl-C
// is a key for the sandbox) ends the session: the terminal restored, the
// sandbox destroyed, exit 128+signal. Closing the window (a hangup) does
// the same, with 129.
func TestShellSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			w := newWindow(t, 24, 80)
			before := w.mode()
			p := startInWindow(t, w, "shell")
			w.expect(`[$#] $`)
			agents := children(t, p.cmd.Process.Pid)
			if sig == syscall.SIGHUP {
				w.ptmx.Close() // the window closes: the kernel hangs the terminal up
			} else if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code, want := p.exitCode(), 128+int(sig); code != want {
				t.Errorf("after %v: compute exited %d, want %d; the screen shows:\n%q", sig, code, want, w.screen())
			}
			if sig != syscall.SIGHUP {
				checkRestored(t, w, before)
				w.expect(`compute: interrupted`)
			}
			if len(agents) == 0 {
				t.Errorf("the CLI has no child process: where does its local sandbox run?")
			}
			for _, pid := range agents {
				if alive(pid) {
					t.Errorf("the sandbox's process %d still runs after compute exited", pid)
				}
			}
		})
	}
}

// shellInProcess runs the CLI in this process with the window's terminal
// as its standard streams, and returns its exit code once it exits.
func shellInProcess(t *testing.T, a *app, w *window, args ...string) <-chan int {
	a.stdin, a.stdout, a.stderr = w.tty, w.tty, w.tty
	code := make(chan int, 1)
	go func() { code <- a.main(context.Background(), args) }()
	return code
}

func waitCode(t *testing.T, w *window, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(cliHangGuard):
		t.Fatalf("compute has not returned after %v: it hangs; the screen shows:\n%q", cliHangGuard, w.screen())
		return 0
	}
}

// The sandbox of compute shell is destroyed after the session, and the
// provider closed.
func TestShellDestroysSandbox(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	a, rec := recordingApp(&stdout, &stderr)
	w := newWindow(t, 24, 80)
	code := shellInProcess(t, a, w, "shell", "--", "sh", "-c", "echo started; read -r line; exit 5")
	w.expect(`started\r\n`)
	w.typeIn("\r")
	if c := waitCode(t, w, code); c != 5 {
		t.Errorf("compute exited %d, want 5; the screen shows:\n%q", c, w.screen())
	}
	rec.checkCleanedUp(t)
}

// plainSandboxes is a provider whose sandboxes have no terminals.
type plainSandboxes struct{ provider }

func (p plainSandboxes) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	sb, err := p.provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	return struct{ driver.Sandbox }{sb}, nil // hides driver.Terminaler
}

// A provider without terminals: one line that says what to use instead,
// exit 1, the sandbox destroyed.
func TestShellUnsupported(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	a, rec := recordingApp(&stdout, &stderr)
	local := a.providers["local"]
	a.providers["local"] = func(o providerOptions) (provider, error) {
		p, err := local(o)
		if err != nil {
			return nil, err
		}
		rec.provider = plainSandboxes{rec.provider}
		return p, nil
	}
	w := newWindow(t, 24, 80)
	before := w.mode()
	if c := waitCode(t, w, shellInProcess(t, a, w, "shell")); c != exitFailure {
		t.Errorf("compute exited %d, want %d", c, exitFailure)
	}
	w.expect(`compute: local sandboxes have no terminals: not supported by this provider; without a terminal, run commands with "compute exec -- COMMAND", or pipe a script into "compute shell"\r?\n`)
	if n := strings.Count(w.screen(), "\n"); n != 1 {
		t.Errorf("want one line, got %d:\n%s", n, w.screen())
	}
	checkRestored(t, w, before)
	rec.checkCleanedUp(t)
}

// When standard input is not a terminal, compute shell is exec: the shell
// runs the script on standard input, COMMAND reads it.
func TestShellNotATerminal(t *testing.T) {
	t.Parallel()
	cli(t, "echo hi\n", "shell").check(t, 0, "hi\n")
	cli(t, "echo \"$X from $(pwd)\"; exit 6\n", "shell", "-e", "X=hello", "-w", "/tmp").check(t, 6, "hello from /tmp\n")
	cli(t, "abc\n", "shell", "--", "tr", "a-z", "A-Z").check(t, 0, "ABC\n")
	cli(t, "", "shell", "--", "sh", "-c", "test -t 0 || echo no-tty").check(t, 0, "no-tty\n")
	o := cli(t, "", "shell", "--", "no-such-command-xyz")
	o.check(t, exitNotFound, "")
}

func TestShellUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"shell", "-e", "NOVALUE"}, `--env "NOVALUE": want KEY=VALUE`},
		{[]string{"shell", "--", ""}, "empty command name"},
		{[]string{"sandbox", "shell"}, "wants a sandbox id"},
		{[]string{"sandbox", "shell", "--provider", "local", "sb-1"}, "cannot be managed by id"},
		{[]string{"sandbox", "shell", "--server", "http://127.0.0.1:1", "--provider", "modal", "x"}, "cannot be combined"},
	} {
		o := cli(t, "", tt.args...)
		if o.code != exitUsage || !strings.Contains(o.stderr, tt.want) {
			t.Errorf("compute %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), o.code, o.stderr, exitUsage, tt.want)
		}
	}
	o := cli(t, "", "shell", "--help")
	for _, want := range []string{"raw mode", "not a terminal", "compute exec --stdin", "--image", "--lifetime", "--env"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("compute shell --help lacks %q:\n%s", want, o.stdout)
		}
	}
	o = cli(t, "", "sandbox", "shell", "--help")
	for _, want := range []string{"keeps running", "not a terminal", "compute sandbox exec --stdin"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("compute sandbox shell --help lacks %q:\n%s", want, o.stdout)
		}
	}
}

// compute sandbox shell attaches to a sandbox of a compute server and
// leaves it running; compute shell --server destroys its own.
func TestSandboxShellServer(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	o := cli(t, "", "sandbox", "create", "--server", s.url)
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || id == "" {
		t.Fatalf("sandbox create --server: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	w := newWindow(t, 30, 100)
	before := w.mode()
	p := startInWindow(t, w, "sandbox", "shell", "--server", s.url, id)
	w.expect(`[$#] $`)
	w.typeIn(setPrompt)
	w.expect(prompt)
	w.typeIn("echo kept > f; echo $((6*7))\r")
	w.expect(`[\r\n]42\r\n`)
	w.expect(prompt)
	w.typeIn("stty size\r")
	w.expect(`[\r\n]30 100\r\n`)
	w.expect(prompt)
	w.resize(35, 90)
	for deadline := time.Now().Add(screenGuard); ; {
		w.typeIn("stty size\r")
		m := w.expect(`(\d+ \d+)\r\n`)
		w.expect(prompt)
		if m[1] == "35 90" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stty size still shows %q %v after the window became 35x90", m[1], screenGuard)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.typeIn("exit 3\r")
	if code := p.exitCode(); code != 3 {
		t.Errorf("exit 3: compute exited %d, want 3; the screen shows:\n%q", code, w.screen())
	}
	checkRestored(t, w, before)
	// The sandbox is still there, with its state.
	cli(t, "", "sandbox", "exec", "--server", s.url, id, "--", "cat", "f").check(t, 0, "kept\n")
	cli(t, "cat f\n", "sandbox", "shell", "--server", s.url, id).check(t, 0, "kept\n")
	cli(t, "", "sandbox", "shell", "--server", s.url, id, "--", "sh", "-c", "exit 7").check(t, 7, "")

	// compute shell --server: a sandbox of the server, which lives an
	// hour (not a program's default), destroyed after.
	w = newWindow(t, 24, 80)
	p = startInWindow(t, w, "shell", "--server", s.url)
	w.expect(`[$#] $`)
	w.typeIn("echo $((6*7))\r")
	w.expect(`[\r\n]42\r\n`)
	o = cli(t, "", "sandbox", "list", "--server", s.url, "--json")
	if n := strings.Count(o.stdout, `"timeout": 3600000`); n != 1 {
		t.Errorf("want one sandbox with a lifetime of an hour (compute shell's) among:\n%s", o.stdout)
	}
	w.typeIn("exit\r")
	if code := p.exitCode(); code != 0 {
		t.Errorf("exit: compute exited %d, want 0; the screen shows:\n%q", code, w.screen())
	}
	cli(t, "", "sandbox", "list", "--server", s.url, "-q").check(t, 0, id+"\n")
	cli(t, "", "sandbox", "destroy", "--server", s.url, id).check(t, 0, "")
}

// compute sandbox shell on Modal (the emulator), the default provider of
// the sandbox commands.
func TestSandboxShellModal(t *testing.T) {
	srv := modalEnv(t)
	o := cli(t, "", "sandbox", "create")
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || !strings.HasPrefix(id, "sb-") {
		t.Fatalf("sandbox create: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	cli(t, "echo hi from modal\n", "sandbox", "shell", id).check(t, 0, "hi from modal\n")

	w := newWindow(t, 30, 100)
	before := w.mode()
	p := startInWindow(t, w, "sandbox", "shell", id)
	if _, ok := any(&modal.Sandbox{}).(driver.Terminaler); !ok {
		if code := p.exitCode(); code != exitFailure {
			t.Errorf("compute exited %d, want %d", code, exitFailure)
		}
		w.expect(`no terminals.*compute sandbox exec ` + id + ` -- COMMAND`)
		checkRestored(t, w, before)
		return
	}
	w.expect(`[$#] $`)
	w.typeIn(setPrompt)
	w.expect(prompt)
	w.typeIn("echo $((6*7)); stty size\r")
	w.expect(`[\r\n]42\r\n30 100\r\n`) // Modal cannot resize: the size it started with
	w.expect(prompt)
	w.typeIn("exit 3\r")
	if code := p.exitCode(); code != 3 {
		t.Errorf("exit 3: compute exited %d, want 3; the screen shows:\n%q", code, w.screen())
	}
	checkRestored(t, w, before)
	cli(t, "", "sandbox", "exec", id, "--", "true").check(t, 0, "")

	// compute shell --provider modal --image: a sandbox of that image,
	// destroyed after.
	w = newWindow(t, 24, 80)
	p = startInWindow(t, w, "shell", "--provider", "modal", "--image", "alpine:3.20", "--", "sh", "-c", "echo in-modal; exit 2")
	w.expect(`in-modal\r\n`)
	if code := p.exitCode(); code != 2 {
		t.Errorf("compute exited %d, want 2; the screen shows:\n%q", code, w.screen())
	}
	cli(t, "", "sandbox", "list", "-q").check(t, 0, id+"\n")
	images := 0
	for _, rec := range srv.Sandboxes() {
		if rec.Image == "alpine:3.20" {
			images++
		}
	}
	if images != 1 {
		t.Errorf("%d sandboxes of --image alpine:3.20, want 1: %+v", images, srv.Sandboxes())
	}
}
