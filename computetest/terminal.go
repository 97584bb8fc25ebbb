package computetest

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/internal/termtest"
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

// screen watches a compute terminal (package termtest).
type screen = termtest.Screen[*compute.Terminal]

func newScreen(t *testing.T, term *compute.Terminal) *screen {
	return termtest.New(t, term, screenTimeout)
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
		sc.Type("PS1='ready> '\r")
		sc.Expect(`ready> `)
		sc.Type("echo sum-$((40+2))\r")
		// A terminal ends lines with CR LF. (Between the echoed Enter and
		// the output, bash may switch bracketed paste off: "\x1b[?2004l\r".)
		sc.Expect(`sum-42\r\n`)
		sc.Expect(`ready> `)
		sc.Type("tty; test -t 0 && test -t 1 && echo both-ttys\r")
		sc.Expect(`/dev/pts/\d+\r\n`)
		sc.Expect(`both-ttys`)
		sc.Expect(`ready> `)
		sc.Type("exit 3\r")
		if code := sc.WaitExit(); code != 3 {
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
		sc.Expect(`31 101\r\n`)
		if s.cfg.noResize {
			if err := sc.Term.Resize(40, 120); !errors.Is(err, compute.ErrUnsupported) {
				t.Errorf("Resize on a provider declared without resize: got %v, want ErrUnsupported", err)
			}
			sc.Type("\r")
			sc.Expect(`31 101\r\n`)
		} else {
			if err := sc.Term.Resize(40, 120); err != nil {
				t.Fatalf("Resize(40, 120): %v", err)
			}
			sc.Type("\r")
			sc.Expect(`40 120\r\n`)
		}
		if code := sc.WaitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		if err := sc.Term.Resize(0, 80); !errors.Is(err, compute.ErrInvalid) {
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
		sc.Expect(`started\r\n`)
		waitForSleep(t, ctx, sb, mark)
		start := time.Now()
		sc.Type("\x03") // Ctrl-C: SIGINT to the foreground process group
		sc.Expect(`status=130\r\n`)
		within(t, "sleep after Ctrl-C", time.Since(start), killBound)
		if code := sc.WaitExit(); code != 0 {
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
		sc.Expect(regexp.QuoteMeta("term=xterm-256color foo=bar baz dir=" + dir + "\r\n"))
		sc.Type("héllo wörld\r")
		sc.Expect(`got<héllo wörld>\r\n`)
		sc.Type("line for cat\r")
		sc.Expect(`line for cat\r\nline for cat\r\n`) // the echo, then cat's copy
		sc.Type("\x04")                               // Ctrl-D at the start of a line: end of input
		sc.Expect(`cat-ended\r\n`)
		if code := sc.WaitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("ExitCode", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		sc := openTerminal(t, ctx, sb, &compute.TerminalOptions{Argv: shellCmd(`printf 'bye\n'; exit 7`)})
		sc.Expect(`bye\r\n`)
		if code := sc.WaitExit(); code != 7 {
			t.Errorf("exit code %d, want 7", code)
		}
		if code, err := sc.Term.Wait(); code != 7 || err != nil {
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
		<-sc.Done()
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
