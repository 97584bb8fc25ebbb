//go:build linux

package local_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/internal/termtest"
	"github.com/computesdk-go/compute/local"
)

// Terminals of local sandboxes: a program on a pseudo-terminal is
// confined like any command, sees only its own sandbox's terminals, and
// leaves nothing behind. Each test names the threat it covers, as in
// isolation_test.go; the shared behaviour (shell, size, Ctrl-C, exit
// codes, Close) is computetest's Terminal group, run by conformance_test.go.

// screenWait bounds how long a test waits for text on a terminal: a guard
// against hangs, not a speed limit.
const screenWait = time.Minute

// termScreen watches a compute terminal (package termtest).
type termScreen = termtest.Screen[*compute.Terminal]

// openTerm starts a terminal in sb, closed when the test ends.
func openTerm(t *testing.T, sb *compute.Sandbox, opts *compute.TerminalOptions) *termScreen {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), screenWait)
	defer cancel()
	term, err := sb.Terminal(ctx, opts)
	if err != nil {
		t.Fatalf("Terminal(%+v): %v", opts, err)
	}
	t.Cleanup(func() { term.Close() })
	return termtest.New(t, term, screenWait)
}

// isolations runs f on a sandbox of each isolation mode.
func isolations(t *testing.T, popts local.Options, f func(t *testing.T, sb *compute.Sandbox)) {
	for _, iso := range []local.Isolation{local.IsolationNamespaces, local.IsolationNone} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			o := popts
			o.Isolation = iso
			f(t, newSandboxWith(t, o, nil))
		})
	}
}

// Threat: a sandbox's code reaching terminals that are not its own: the
// host's (a person's shell, with its scrollback and keyboard) or another
// sandbox's. The sandbox has a devpts instance of its own: its terminals
// are numbered from 0, it lists none of anyone else's, and they belong to
// the sandbox's root, not to the agent.
func TestTerminalOwnDevpts(t *testing.T) {
	// A terminal of the host's, to be sure there is one to hide.
	hostPTY, hostTTY, err := pty.Open()
	if err != nil {
		t.Fatalf("open a host pseudo-terminal: %v", err)
	}
	defer hostPTY.Close()
	defer hostTTY.Close()
	t.Logf("the host's terminal: %s", hostTTY.Name())

	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := compute.New(compute.Config{Provider: p})
	ctx := context.Background()
	a, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Sandbox b holds two terminals: /dev/pts/0 and /dev/pts/1 in b.
	for range 2 {
		openTerm(t, b, &compute.TerminalOptions{Argv: []string{"cat"}})
	}
	if out := shell(t, b, "ls /dev/pts").Stdout; out != "0\n1\nptmx\n" {
		t.Errorf("sandbox b's /dev/pts with two terminals open:\n%s\nwant 0, 1 and ptmx", out)
	}
	// a sees only its own.
	if out := shell(t, a, "ls /dev/pts").Stdout; out != "ptmx\n" {
		t.Errorf("a sandbox without terminals lists in /dev/pts:\n%s\nwant ptmx alone (no host or other sandbox terminals)", out)
	}
	sc := openTerm(t, a, &compute.TerminalOptions{Argv: shellCmd(`tty; echo "list: $(ls /dev/pts | tr '\n' ' ')"; stat -c 'owner %u:%g mode %a' "$(tty)"; readlink /dev/ptmx; echo via-dev-tty > /dev/tty; grep -w devpts /proc/self/mounts`)})
	sc.Expect(`^/dev/pts/0\r\n`)
	sc.Expect(`list: 0 ptmx \r\n`)
	sc.Expect(`owner 0:0 mode 620\r\n`)
	sc.Expect(`pts/ptmx\r\n`)
	sc.Expect(`via-dev-tty\r\n`) // /dev/tty is the controlling terminal
	m := sc.Expect(`devpts /dev/pts devpts (\S+)`)
	if !strings.Contains(m[1], "ptmxmode=666") || !strings.Contains(m[1], "max=") {
		t.Errorf("the sandbox's devpts options %q: want its own instance with ptmxmode=666 and a max", m[1])
	}
	if code := sc.WaitExit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	// A terminal lasts until its master side is closed.
	sc.Term.Close()
	// A terminal a program opens inside the sandbox is of its devpts too.
	res := python(t, a, `import os, pty
m, s = pty.openpty()
print(os.ttyname(s))`)
	if !regexp.MustCompile(`^/dev/pts/\d+\n$`).MatchString(res.Stdout) {
		t.Errorf("a pty opened by sandboxed code: %q %q", res.Stdout, res.Stderr)
	}
	// The host's terminal is not reachable by its number either.
	n := strings.TrimPrefix(hostTTY.Name(), "/dev/pts/")
	out := shell(t, a, "ls /dev/pts; echo x > /dev/pts/"+n+" && echo wrote").Stdout
	if strings.Contains(out, "wrote") && !strings.Contains(out, n+"\n") {
		t.Errorf("sandboxed code wrote to /dev/pts/%s, which it does not list:\n%s", n, out)
	}
	if !strings.Contains(out, "wrote") && out != "ptmx\n" {
		t.Errorf("/dev/pts of a sandbox without terminals:\n%s", out)
	}
	buf := make([]byte, 512)
	fd := int(hostPTY.Fd())
	unix.SetNonblock(fd, true)
	if n, _ := unix.Read(fd, buf); n > 0 {
		t.Errorf("the host's terminal received %q from the sandbox", buf[:n])
	}
}

func shellCmd(script string) []string { return []string{"/bin/sh", "-c", script} }

// ioctlProbe tries terminal ioctls on the program's own terminal and
// prints "name ok" or "name errno N" for each.
const ioctlProbe = `import ctypes, fcntl, os, struct, termios
libc = ctypes.CDLL(None, use_errno=True)
def probe(name, req, arg):
    r = libc.ioctl(0, req, arg)
    print(name, "ok" if r >= 0 else "errno %d" % ctypes.get_errno(), flush=True)
x = ctypes.create_string_buffer(b"x")
probe("TIOCSTI", termios.TIOCSTI, x)
probe("TIOCSTI-high-bits", ctypes.c_ulong((1 << 32) | termios.TIOCSTI), x)
probe("TIOCLINUX", 0x541C, ctypes.create_string_buffer(b"\x02" + bytes(8)))
probe("TIOCSETD", 0x5423, ctypes.byref(ctypes.c_int(0)))
ws = ctypes.create_string_buffer(8)
probe("allow-TIOCGWINSZ", termios.TIOCGWINSZ, ws)
probe("allow-TIOCSWINSZ", termios.TIOCSWINSZ, ws)
probe("allow-TCGETS", termios.TCGETS, ctypes.create_string_buffer(64))
attrs = termios.tcgetattr(0)
termios.tcsetattr(0, termios.TCSANOW, attrs)
print("allow-TCSETS ok", flush=True)
os.tcsetpgrp(0, os.getpgrp())
print("allow-TIOCSPGRP ok", flush=True)
print("allow-TIOCGPGRP", "ok" if os.tcgetpgrp(0) == os.getpgrp() else "wrong", flush=True)
print("probe-done", flush=True)
`

// Threat: a program typing into a terminal as if the person at it typed
// (TIOCSTI, TIOCLINUX): into its own, to make the next shell command the
// attacker's, or, were it reachable, another's. And changing the
// terminal's line discipline (TIOCSETD), the way to the n_gsm and n_hdlc
// races behind local root exploits. All three are refused with EPERM on
// the sandbox's terminals, also with high bits set; what shells and REPLs
// need is allowed.
func TestTerminalInjectionRefused(t *testing.T) {
	sb := newSandbox(t, nil)
	sc := openTerm(t, sb, &compute.TerminalOptions{Argv: []string{"python3", "-c", ioctlProbe}})
	sc.Expect(`probe-done`)
	sc.WaitExit()
	out := sc.Output()
	seen := 0
	for _, line := range strings.Split(out, "\r\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] == "probe-done" {
			continue
		}
		seen++
		if strings.HasPrefix(f[0], "allow-") {
			if f[1] != "ok" {
				t.Errorf("a terminal operation shells need is refused: %q", line)
			}
		} else if f[1] != "errno" || f[2] != "1" {
			t.Errorf("not refused with EPERM on the sandbox's terminal: %q", line)
		}
	}
	if seen != 10 {
		t.Errorf("%d probe results, want 10; the terminal showed:\n%s", seen, out)
	}
}

// Threat: a terminal as a way around the sandbox's confinement: its
// program running with privileges a command lacks (another uid,
// capabilities, no seccomp), outside the sandbox's memory limit, or
// outside the cgroup that kills everything it starts.
func TestTerminalConfinement(t *testing.T) {
	sb := newSandboxWith(t, local.Options{MaxMemory: 128 << 20, DiskSize: 32 << 20}, nil)
	limits := requireCgroups(t, sb)
	sc := openTerm(t, sb, &compute.TerminalOptions{Argv: shellCmd(`id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/cgroup | grep pids`)})
	sc.Expect(`^0\r\n`)
	sc.Expect(`CapEff:\s+0+\r\n`)
	sc.Expect(`CapBnd:\s+0+\r\n`)
	sc.Expect(`NoNewPrivs:\s+1\r\n`)
	sc.Expect(`Seccomp:\s+2\r\n`)
	if strings.Contains(strings.Join(limits, "\n"), "commands: each in a cgroup of its own") {
		sc.Expect(`pids:/cmd-\d+\r\n`) // its own, below the sandbox's (a cgroup namespace)
	}
	sc.WaitExit()

	// Memory: the program is killed at the sandbox's limit, and Wait says why.
	ctx, cancel := context.WithTimeout(context.Background(), screenWait)
	defer cancel()
	term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"python3", "-c", "b = bytearray(512 << 20); print('allocated')"}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	go io.Copy(io.Discard, term)
	code, err := term.Wait()
	if code != 137 || !errors.Is(err, compute.ErrOutOfMemory) {
		t.Errorf("512 MiB on a terminal in a 128 MiB sandbox: Wait = %d, %v; want 137 and ErrOutOfMemory", code, err)
	}
	// The host uid: the sandbox's code's, as for commands.
	uid := sandboxHostUID(t, sb)
	sc = openTerm(t, sb, &compute.TerminalOptions{Argv: []string{"sleep", "1006.5"}})
	pids := waitHostProcesses(t, "sleep 1006.5", 1)
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), fmt.Sprintf("\nUid:\t%d\t", uid)) {
		t.Errorf("the terminal's program runs as another host uid than the sandbox's code (%d):\n%s", uid, st)
	}
	sc.Term.Close()
}

// hostProcesses returns the host pids whose command line contains s.
func hostProcesses(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitHostProcesses waits until n processes whose command line contains
// s run on the host.
func waitHostProcesses(t *testing.T, s string, n int) []int {
	t.Helper()
	for deadline := time.Now().Add(screenWait); ; time.Sleep(10 * time.Millisecond) {
		if pids := hostProcesses(s); len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes %q did not start within %v", n, s, screenWait)
		}
	}
}

// openFDs counts this process's descriptors, but those of cgroup files
// (a sandbox keeps a few spare per-command cgroups open, as many as its
// commands' pattern made it keep, which is no leak) and the launcher's
// control socket (started by the process's second isolated sandbox,
// which may come in the middle of a test).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	launcher := strconv.Itoa(local.Launcher().FD)
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if !strings.HasPrefix(target, "/sys/fs/cgroup/") && e.Name() != launcher {
			n++
		}
	}
	return n - 1 // ReadDir's own
}

// expectFDs waits until the process holds at most want descriptors
// again (earlier tests' sandboxes may still be closing theirs: fewer is
// no leak), and no terminal's.
func expectFDs(t *testing.T, want int, after string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := openFDs(t)
		if got <= want && ptyFDs() == 0 {
			return
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir("/proc/self/fd")
			var list []string
			for _, e := range ents {
				target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
				list = append(list, e.Name()+" -> "+target)
			}
			t.Fatalf("%s: the host holds %d descriptors (%d of terminals), %d before:\n%s", after, got, ptyFDs(), want, strings.Join(list, "\n"))
		}
	}
}

// ptyFDs counts this process's descriptors of pseudo-terminal masters
// (character device 5:2, ptmx).
func ptyFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc/self/fd", e.Name()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(5, 2) {
			n++
		}
	}
	return n
}

// expectGone waits until no host process's command line contains s.
func expectGone(t *testing.T, s, after string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pids := hostProcesses(s)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %q still run on the host: %v", after, s, pids)
		}
	}
}

// Threat: a terminal's processes or the host's descriptors outliving the
// terminal or the sandbox: a shell's background jobs, one that left the
// session (setsid) and one that ignores SIGHUP go on running after the
// person hung up, and every terminal costs the host descriptors until it
// runs out. Close kills all of them (the program's cgroup, or without
// one its session); so does Destroy, without Close, and it releases the
// terminal's descriptors. Checked on the host's process table and
// /proc/self/fd, in both isolation modes.
func TestTerminalCloseAndDestroyKill(t *testing.T) {
	// Not parallel: it counts this process's descriptors.
	for _, iso := range []local.Isolation{local.IsolationNamespaces, local.IsolationNone} {
		t.Run(string(iso), func(t *testing.T) {
			p, err := local.New(local.Options{Isolation: iso, Prestart: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c := compute.New(compute.Config{Provider: p})
			ctx := context.Background()
			mark := fmt.Sprintf("%d.%06d", 1000+os.Getpid()%1000, time.Now().Nanosecond()/1000)
			script := "setsid sleep " + mark + "1 & nohup sleep " + mark + "2 >/dev/null 2>&1 & sleep " + mark + "3 & echo started; sleep " + mark + "4"
			beforeSandbox := openFDs(t)

			sb, err := c.Create(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			shell(t, sb, "true") // the sandbox's first command: its cgroups are ready
			before := openFDs(t)
			sc := openTerm(t, sb, &compute.TerminalOptions{Argv: shellCmd(script)})
			sc.Expect("started")
			waitHostProcesses(t, "sleep "+mark, 4)
			if ptyFDs() == 0 {
				t.Fatal("no terminal master among the host's descriptors while a terminal is open: the leak check cannot see one")
			}
			if err := sc.Term.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			expectGone(t, "sleep "+mark, "after Close")
			<-sc.Done()
			expectFDs(t, before, "after Close")

			// The program exited, its background jobs did not: Close still
			// ends them.
			// (They ignore the SIGHUP the kernel sends the foreground process
			// group when the session's leader exits, and hold the terminal.)
			sc = openTerm(t, sb, &compute.TerminalOptions{Argv: shellCmd("trap '' HUP; sleep " + mark + "5 & sleep " + mark + "6 & echo started")})
			sc.Expect("started")
			if code := sc.WaitExit(); code != 0 {
				t.Errorf("exit code %d", code)
			}
			waitHostProcesses(t, "sleep "+mark, 2)
			if err := sc.Term.Close(); err != nil {
				t.Fatalf("Close after the exit: %v", err)
			}
			expectGone(t, "sleep "+mark, "after Close of a terminal whose program exited")
			expectFDs(t, before, "after Close of a terminal whose program exited")

			// Destroy, with the terminal open.
			sc = openTerm(t, sb, &compute.TerminalOptions{Argv: shellCmd(script)})
			sc.Expect("started")
			waitHostProcesses(t, "sleep "+mark, 4)
			if err := sb.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			expectGone(t, "sleep "+mark, "after Destroy")
			select {
			case <-sc.Done():
			case <-time.After(screenWait):
				t.Fatalf("Read did not end within %v of Destroy", screenWait)
			}
			if _, err := sc.Term.Wait(); !errors.Is(err, compute.ErrStopped) {
				t.Errorf("Wait after Destroy: %v, want ErrStopped", err)
			}
			expectFDs(t, beforeSandbox, "after Destroy")
			if err := sc.Term.Close(); err != nil {
				t.Errorf("Close after Destroy: %v", err)
			}
			if _, err := sb.Terminal(ctx, nil); !errors.Is(err, compute.ErrStopped) {
				t.Errorf("Terminal on a destroyed sandbox: %v, want ErrStopped", err)
			}
		})
	}
}

// foreground waits until a process whose command line contains s is in
// its terminal's foreground process group (so Ctrl-C reaches it),
// reading the sandbox's /proc: stat's fields 5 and 8 (pgrp and tpgid).
func foreground(t *testing.T, sb *compute.Sandbox, s string) {
	t.Helper()
	script := `for d in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in *"` + s + `"*) ;; *) continue;; esac
  set -- $(sed 's/.*) //' $d/stat); [ "$3" = "$6" ] && echo fg
done`
	for deadline := time.Now().Add(screenWait); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(shell(t, sb, script).Stdout, "fg") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not become the terminal's foreground job within %v", s, screenWait)
		}
	}
}

// Job control in an interactive bash: a background job, jobs, fg, Ctrl-C
// reaching the foreground job (not the shell), Ctrl-Z stopping it.
func TestTerminalJobControl(t *testing.T) {
	isolations(t, local.Options{}, func(t *testing.T, sb *compute.Sandbox) {
		mark := fmt.Sprintf("%d.%06d", 1000+os.Getpid()%1000, time.Now().Nanosecond()/1000)
		sc := openTerm(t, sb, &compute.TerminalOptions{
			Argv: []string{"bash", "--norc", "--noprofile", "-i"},
			Env:  map[string]string{"PS1": "jc$ "},
		})
		sc.Expect(`jc\$ `)
		sc.Type("sleep " + mark + "1 &\r")
		sc.Expect(`\[1\] \d+`)
		sc.Expect(`jc\$ `)
		sc.Type("jobs\r")
		sc.Expect(`\[1\]\+\s+Running\s+sleep ` + regexp.QuoteMeta(mark) + `1 &`)
		sc.Expect(`jc\$ `)
		sc.Type("fg\r")
		sc.Expect(`sleep ` + regexp.QuoteMeta(mark) + `1\r\n`)
		foreground(t, sb, "sleep "+mark+"1")
		sc.Type("\x03")
		sc.Expect(`jc\$ `)
		sc.Type("echo status=$?; jobs; echo jobs-listed\r")
		sc.Expect(`status=130\r\n(\x1b\[\?2004l\r)?jobs-listed`)
		// Ctrl-Z stops the foreground job; the shell gets the terminal back.
		sc.Type("sleep " + mark + "2\r")
		foreground(t, sb, "sleep "+mark+"2")
		sc.Type("\x1a")
		sc.Expect(`\[1\]\+\s+Stopped\s+sleep ` + regexp.QuoteMeta(mark) + `2`)
		sc.Expect(`jc\$ `)
		sc.Type("bg\r") // resumed in the background
		sc.Expect(`\[1\]\+ sleep ` + regexp.QuoteMeta(mark) + `2 &`)
		sc.Expect(`jc\$ `)
		sc.Type("kill %1; wait; echo kill''ed\r")
		sc.Expect(`killed\r\n`)
		sc.Type("exit 4\r")
		if code := sc.WaitExit(); code != 4 {
			t.Errorf("exit 4: exit code %d", code)
		}
	})
}

// An interactive Python REPL on the terminal.
func TestTerminalPythonREPL(t *testing.T) {
	isolations(t, local.Options{}, func(t *testing.T, sb *compute.Sandbox) {
		sc := openTerm(t, sb, &compute.TerminalOptions{Argv: []string{"python3", "-i", "-q"}})
		sc.Expect(`>>> `)
		sc.Type("1+1\r")
		sc.Expect(`1\+1\r\n2\r\n>>> `)
		sc.Type("import os; os.isatty(0), os.ttyname(0).startswith('/dev/pts/')\r")
		sc.Expect(`\(True, True\)\r\n>>> `)
		sc.Type("for i in range(10**12): i == 1000 and print('spin' + 'ning')\r")
		sc.Expect(`\.\.\. `)
		sc.Type("\r")
		sc.Expect(`spinning\r\n`)
		sc.Type("\x03") // KeyboardInterrupt, and the REPL goes on
		sc.Expect(`KeyboardInterrupt\r\n>>> `)
		sc.Type("exit(5)\r")
		if code := sc.WaitExit(); code != 5 {
			t.Errorf("exit(5): exit code %d", code)
		}
	})
}

// Threat: output lost. A program that exits while something it started
// still holds the terminal (so the end never shows as EIO) must still
// have all it wrote read, however late and slowly the caller reads: here
// 25 kB, more than the terminal buffers (about 18 kB, of which FIONREAD
// shows 4), read only after the program has been blocked on a full
// terminal for a while.
func TestTerminalOutputDrainedAfterExit(t *testing.T) {
	isolations(t, local.Options{}, func(t *testing.T, sb *compute.Sandbox) {
		ctx, cancel := context.WithTimeout(context.Background(), screenWait)
		defer cancel()
		term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: shellCmd(`trap '' HUP; sleep 1007 & head -c 25000 /dev/zero | tr '\0' a; echo; echo end-of-output`)})
		if err != nil {
			t.Fatal(err)
		}
		defer term.Close()
		time.Sleep(300 * time.Millisecond)
		var got []byte
		buf := make([]byte, 200)
		for {
			n, err := term.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			time.Sleep(10 * time.Millisecond) // a slow reader
		}
		if a := strings.Count(string(got), "a"); a != 25000 || !strings.HasSuffix(string(got), "end-of-output\r\n") {
			t.Errorf("read %d bytes, %d of the 25000 a's, ending %q; want all, then end-of-output", len(got), a, got[max(0, len(got)-40):])
		}
		if code, err := term.Wait(); code != 0 || err != nil {
			t.Errorf("Wait = %d, %v", code, err)
		}
	})
}
