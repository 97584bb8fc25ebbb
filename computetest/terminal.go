package computetest

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

// NoTerminalResize declares that the provider's terminals cannot change
// size once started (Modal's): the resize case then checks that the
// initial size holds and that Resize reports compute.ErrUnsupported.
func NoTerminalResize() Option { return func(c *config) { c.noResize = true } }

// SkipTerminal declares that the provider has no terminals: the terminal
// cases are skipped (saying so), and Run checks instead that
// Sandbox.Terminal reports compute.ErrUnsupported.
func SkipTerminal() Option { return func(c *config) { c.noTerminal = true } }

// screenTimeout bounds how long a case waits for text to appear on a
// terminal: a guard against hangs, not a speed limit.
const screenTimeout = 60 * time.Second

// screen reads a terminal in the background and keeps everything it
// showed, so a case can wait for text as a person watches the screen.
type screen struct {
	t    *testing.T
	term *compute.Terminal

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every read
	buf     strings.Builder
	seen    int   // how much of buf expect has consumed
	err     error // Read's final error
	done    chan struct{}
}

func newScreen(t *testing.T, term *compute.Terminal) *screen {
	s := &screen{t: t, term: term, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := term.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			if err != nil {
				s.err = err
			}
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// expect waits until the output after the last match matches re, and
// returns the submatches.
func (s *screen) expect(re string) []string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(screenTimeout)
	for {
		s.mu.Lock()
		out := s.buf.String()[s.seen:]
		if loc := rx.FindStringSubmatchIndex(out); loc != nil {
			m := rx.FindStringSubmatch(out)
			s.seen += loc[1]
			s.mu.Unlock()
			return m
		}
		changed, err := s.changed, s.err
		s.mu.Unlock()
		if err != nil {
			s.t.Fatalf("terminal ended (%v) before showing %q; it showed:\n%q", err, re, out)
		}
		select {
		case <-changed:
		case <-timeout:
			s.t.Fatalf("the terminal did not show %q within %v; it showed:\n%q", re, screenTimeout, out)
		}
	}
}

// typeIn writes keystrokes.
func (s *screen) typeIn(keys string) {
	s.t.Helper()
	if _, err := s.term.Write([]byte(keys)); err != nil {
		s.t.Fatalf("Write(%q): %v", keys, err)
	}
}

// waitExit waits for the program to exit and for its output to end in
// io.EOF, and returns the exit code.
func (s *screen) waitExit() int {
	s.t.Helper()
	type result struct {
		code int
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		code, err := s.term.Wait()
		ch <- result{code, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(screenTimeout):
		s.t.Fatalf("Wait did not return within %v of the program's exit", screenTimeout)
	}
	if r.err != nil {
		s.t.Fatalf("Wait: %v", r.err)
	}
	select {
	case <-s.done:
	case <-time.After(screenTimeout):
		s.t.Fatalf("Read did not end within %v after the program exited", screenTimeout)
	}
	if !errors.Is(s.err, io.EOF) {
		s.t.Errorf("Read after exit: got %v, want io.EOF", s.err)
	}
	return r.code
}

// openTerminal starts a terminal, closed when t ends.
func openTerminal(t *testing.T, ctx context.Context, sb *compute.Sandbox, opts *compute.TerminalOptions) *screen {
	t.Helper()
	term, err := sb.Terminal(ctx, opts)
	if err != nil {
		t.Fatalf("Terminal(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		if err := term.Close(); err != nil {
			t.Errorf("Terminal.Close: %v", err)
		}
	})
	return newScreen(t, term)
}

// shellCmd runs script in sh on a terminal.
func shellCmd(script string) []string { return []string{"/bin/sh", "-c", script} }

func (s *suite) testTerminal(t *testing.T) {
	if s.cfg.noTerminal {
		sb := s.sandbox(t, nil)
		_, err := sb.Terminal(testContext(t), nil)
		if !errors.Is(err, compute.ErrUnsupported) {
			t.Errorf("Terminal on a provider declared without terminals: got %v, want ErrUnsupported", err)
		}
		t.Skip("skipped: the provider has no terminals (SkipTerminal)")
	}
	t.Run("Shell", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		// The default program is a shell; PS1 makes its prompt known.
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{Env: map[string]string{"PS1": "prompt$ "}})
		sc.typeIn("PS1='ready> '\r")
		sc.expect(`ready> `)
		sc.typeIn("echo sum-$((40+2))\r")
		// A terminal ends lines with CR LF. (Between the echoed Enter and
		// the output, bash may switch bracketed paste off: "\x1b[?2004l\r".)
		sc.expect(`sum-42\r\n`)
		sc.expect(`ready> `)
		sc.typeIn("tty; test -t 0 && test -t 1 && echo both-ttys\r")
		sc.expect(`/dev/pts/\d+\r\n`)
		sc.expect(`both-ttys`)
		sc.expect(`ready> `)
		sc.typeIn("exit 3\r")
		if code := sc.waitExit(); code != 3 {
			t.Errorf("exit 3 in the shell: Wait = %d, want 3", code)
		}
	})
	t.Run("Size", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{
			Argv: shellCmd(`trap 'echo winch' WINCH; stty size; read -r line; stty size`),
			Rows: 31, Cols: 101,
		})
		sc.expect(`31 101\r\n`)
		if s.cfg.noResize {
			if err := sc.term.Resize(40, 120); !errors.Is(err, compute.ErrUnsupported) {
				t.Errorf("Resize on a provider declared without resize: got %v, want ErrUnsupported", err)
			}
			sc.typeIn("\r")
			sc.expect(`31 101\r\n`)
		} else {
			if err := sc.term.Resize(40, 120); err != nil {
				t.Fatalf("Resize(40, 120): %v", err)
			}
			sc.typeIn("\r")
			sc.expect(`40 120\r\n`)
		}
		if code := sc.waitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		if err := sc.term.Resize(0, 80); !errors.Is(err, compute.ErrInvalid) {
			t.Errorf("Resize(0, 80): got %v, want ErrInvalid", err)
		}
	})
	t.Run("Interrupt", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		// The terminal's foreground process group is the program's: Ctrl-C
		// interrupts sleep (and sh, which traps it and goes on).
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{
			Argv: shellCmd(`trap 'echo trapped' INT; echo started; sleep ` + mark + `; echo status=$?`),
		})
		sc.expect(`started\r\n`)
		waitForSleep(t, ctx, sb, mark)
		start := time.Now()
		sc.typeIn("\x03") // Ctrl-C: SIGINT to the foreground process group
		sc.expect(`status=130\r\n`)
		within(t, "sleep after Ctrl-C", time.Since(start), killBound)
		if code := sc.waitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("EnvDirInput", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		dir := scratch(t, sb)
		shell(t, ctx, sb, "mkdir -p "+dir)
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{
			Argv: shellCmd(`echo "term=$TERM foo=$FOO dir=$(pwd)"; IFS= read -r line; echo "got<$line>"; cat; echo cat-ended`),
			Env:  map[string]string{"FOO": "bar baz"},
			Dir:  dir,
		})
		sc.expect(regexp.QuoteMeta("term=xterm-256color foo=bar baz dir=" + dir + "\r\n"))
		sc.typeIn("héllo wörld\r")
		sc.expect(`got<héllo wörld>\r\n`)
		sc.typeIn("line for cat\r")
		sc.expect(`line for cat\r\nline for cat\r\n`) // the echo, then cat's copy
		sc.typeIn("\x04")                             // Ctrl-D at the start of a line: end of input
		sc.expect(`cat-ended\r\n`)
		if code := sc.waitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("ExitCode", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{Argv: shellCmd(`printf 'bye\n'; exit 7`)})
		sc.expect(`bye\r\n`)
		if code := sc.waitExit(); code != 7 {
			t.Errorf("exit code %d, want 7", code)
		}
		if code, err := sc.term.Wait(); code != 7 || err != nil {
			t.Errorf("second Wait = %d, %v; want 7, nil", code, err)
		}
		_, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"no-such-program-" + marker()}})
		if err == nil {
			// Some providers report a missing program as exit 127 on the
			// terminal rather than at the start; both are fine.
			return
		}
		if !errors.Is(err, compute.ErrCommandNotFound) {
			t.Errorf("Terminal of a missing program: got %v, want ErrCommandNotFound or exit 127", err)
		}
	})
	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: shellCmd("sleep " + mark + " & sleep " + mark + "; echo never")})
		if err != nil {
			t.Fatalf("Terminal: %v", err)
		}
		sc := newScreen(t, term)
		waitForSleep(t, ctx, sb, mark)
		start := time.Now()
		if err := term.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		done := make(chan struct{})
		go func() {
			term.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(killBound):
			t.Fatalf("Wait did not return within %v of Close", killBound)
		}
		within(t, "Wait after Close", time.Since(start), killBound)
		<-sc.done
		if err := term.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		expectNoSleep(t, ctx, sb, mark)
	})
	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		for _, o := range []*compute.TerminalOptions{
			{Rows: -1},
			{Cols: compute.MaxTerminalSize + 1},
			{Argv: []string{""}},
			{Argv: []string{"sh", "a\x00b"}},
			{Env: map[string]string{"A=B": "c"}},
		} {
			if term, err := sb.Terminal(ctx, o); !errors.Is(err, compute.ErrInvalid) {
				t.Errorf("Terminal(%+v): got %v, want ErrInvalid", o, err)
				if term != nil {
					term.Close()
				}
			}
		}
	})
}

// waitForSleep waits until a sleep process with the marker runs in sb.
func waitForSleep(t *testing.T, ctx context.Context, sb *compute.Sandbox, mark string) {
	t.Helper()
	for deadline := time.Now().Add(screenTimeout); ; {
		res := run(t, ctx, sb, []string{"/bin/sh", "-c", scanScript, "sh", mark}, nil)
		if res.Stdout != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sleep %s started within %v", mark, screenTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
