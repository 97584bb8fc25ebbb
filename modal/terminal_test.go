package modal_test

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/internal/termtest"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// termScreen watches a terminal (package termtest).
type termScreen = termtest.Screen[*compute.Terminal]

func watchTerminal(t *testing.T, term *compute.Terminal) *termScreen {
	return termtest.New(t, term, hangGuard)
}

func terminalSandbox(t *testing.T) (*modaltest.Server, *compute.Sandbox) {
	t.Helper()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	sb, err := compute.New(compute.Config{Provider: p}).Create(testContext(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sb.Destroy(ctx)
	})
	return srv, sb
}

func openTerminal(t *testing.T, sb *compute.Sandbox, opts *compute.TerminalOptions) (*compute.Terminal, *termScreen) {
	t.Helper()
	term, err := sb.Terminal(testContext(t), opts)
	if err != nil {
		t.Fatalf("Terminal: %v", err)
	}
	t.Cleanup(func() { term.Close() })
	return term, watchTerminal(t, term)
}

// The SDK's PTY is 24×80 and Modal cannot resize one: the size asked for
// at start holds for the terminal's life, and Resize says it cannot.
func TestTerminalSizeHolds(t *testing.T) {
	t.Parallel()
	_, sb := terminalSandbox(t)
	for _, size := range [][2]int{{50, 132}, {24, 80}, {1, 1}, {300, 1000}} {
		term, sc := openTerminal(t, sb, &compute.TerminalOptions{
			Argv: []string{"sh", "-c", `stty size; IFS= read -r l; stty size`},
			Rows: size[0], Cols: size[1],
		})
		want := regexp.QuoteMeta(strings.Join([]string{itoa(size[0]), itoa(size[1])}, " ")) + `\r\n`
		sc.Expect(want)
		err := term.Resize(size[0]+10, size[1]+10)
		if !errors.Is(err, compute.ErrUnsupported) || !strings.Contains(err.Error(), "Modal cannot resize a running terminal") {
			t.Errorf("Resize = %v; want compute.ErrUnsupported saying Modal cannot resize a running terminal", err)
		}
		var me *modal.Error
		if !errors.As(err, &me) {
			t.Errorf("Resize error %T, want *modal.Error", err)
		}
		sc.Type("\r")
		sc.Expect(want)
		if code, err := term.Wait(); code != 0 || err != nil {
			t.Errorf("size %v: Wait = %d, %v; want 0", size, code, err)
		}
		if err := sc.ReadEnd(); err != io.EOF {
			t.Errorf("Read after exit: %v, want io.EOF", err)
		}
	}
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// An argv longer than one exec carries goes through a file, as for
// commands.
func TestTerminalLongArgv(t *testing.T) {
	t.Parallel()
	_, sb := terminalSandbox(t)
	long := strings.Repeat("x", 100<<10)
	term, sc := openTerminal(t, sb, &compute.TerminalOptions{Argv: []string{"sh", "-c", `tty; echo "len=${#1}"`, "sh", long}})
	sc.Expect(`/dev/pts/\d+\r\n`)
	sc.Expect(`len=102400\r\n`)
	if code, err := term.Wait(); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v", code, err)
	}
}

// A program that floods a terminal nobody reads is held (the terminal's
// buffer fills, as a real one does), and Close still ends it and Wait.
func TestTerminalCloseUnread(t *testing.T) {
	t.Parallel()
	_, sb := terminalSandbox(t)
	// 5 MB: more than the terminal holds for its reader.
	term, err := sb.Terminal(testContext(t), &compute.TerminalOptions{Argv: []string{"sh", "-c", "yes flood | head -c 5000000; exec sleep 3600"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let it fill the buffer (the test holds without)
	returns(t, "Close of a flooding terminal nobody reads", func() {
		if err := term.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	returns(t, "Wait after Close", func() {
		code, err := term.Wait()
		t.Logf("Wait after Close = %d, %v", code, err)
	})
	n, err := term.Read(make([]byte, 10))
	if n != 0 || err != io.EOF {
		t.Errorf("Read after Close = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := term.Write([]byte("x")); err == nil {
		t.Errorf("Write after Close succeeded; want an error")
	}
	if stillRunning(t, sb, "sleep") || stillRunning(t, sb, "yes") {
		t.Errorf("the terminal's programs still run after Close")
	}
}

// Destroying the sandbox ends its terminals: Wait and Read return.
func TestTerminalDestroyed(t *testing.T) {
	t.Parallel()
	_, sb := terminalSandbox(t)
	term, sc := openTerminal(t, sb, &compute.TerminalOptions{Argv: []string{"sh", "-c", "echo started; exec sleep 3600"}})
	sc.Expect(`started`)
	if err := sb.Destroy(testContext(t)); err != nil {
		t.Fatal(err)
	}
	var (
		code int
		err  error
	)
	returns(t, "Wait of a terminal whose sandbox was destroyed", func() { code, err = term.Wait() })
	// Either the kill's exit status came first, or the end of the sandbox.
	if (err == nil && code != 137) || (err != nil && !errors.Is(err, compute.ErrStopped)) {
		t.Errorf("Wait after Destroy = %d, %v; want 137 or an error matching compute.ErrStopped", code, err)
	}
	if rerr := sc.ReadEnd(); (err == nil) != (rerr == io.EOF) {
		t.Errorf("Read after Destroy ended with %v, and Wait with %v; want io.EOF with an exit status, Wait's error without", rerr, err)
	}
	if _, err := sb.Terminal(testContext(t), nil); !errors.Is(err, compute.ErrStopped) {
		t.Errorf("Terminal on a destroyed sandbox = %v; want compute.ErrStopped", err)
	}
}

// Threat: a Modal that stops answering pins a terminal's caller. Start is
// bounded by its context; a Write whose call hangs ends with Close; a
// terminal whose output stream breaks for good ends with an error.
func TestHangTerminal(t *testing.T) {
	t.Parallel()
	t.Run("StartPastDeadline", func(t *testing.T) {
		t.Parallel()
		srv, sb := terminalSandbox(t)
		srv.Inject("TaskExecStart", modaltest.Fault{Delay: 10 * time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		returns(t, "Terminal past its deadline while TaskExecStart hangs", func() { _, err = sb.Terminal(ctx, nil) })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Terminal past its deadline = %v; want context.DeadlineExceeded", err)
		}
	})
	t.Run("WriteHangs", func(t *testing.T) {
		t.Parallel()
		srv, sb := terminalSandbox(t)
		term, sc := openTerminal(t, sb, &compute.TerminalOptions{Argv: []string{"sh", "-c", "echo started; exec sleep 3600"}})
		sc.Expect(`started`)
		// The write's call outlives Close (the SDK gives it no context):
		// it hangs for 5 s, long past the Close that ends its wait.
		srv.Inject("TaskExecStdinWrite", modaltest.Fault{Delay: 5 * time.Second, Times: 1})
		werr := make(chan error, 1)
		go func() {
			_, err := term.Write([]byte("x"))
			werr <- err
		}()
		time.Sleep(500 * time.Millisecond)
		returns(t, "Close while a Write hangs", func() {
			if err := term.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		var err error
		returns(t, "the hung Write after Close", func() { err = <-werr })
		if err == nil {
			t.Errorf("a Write that Modal never answered returned no error")
		}
		returns(t, "Wait after Close", func() { term.Wait() })
		// Let the call end, so that the SDK's goroutine for it is gone
		// when the package's leak check runs.
		returns(t, "the hung call's end", func() {
			for hung := true; hung; time.Sleep(50 * time.Millisecond) {
				hung = false
				for _, c := range srv.Calls() {
					hung = hung || (c.Method == "TaskExecStdinWrite" && c.Duration == 0)
				}
			}
		})
	})
	t.Run("OutputBroken", func(t *testing.T) {
		t.Parallel()
		srv, sb := terminalSandbox(t)
		// The terminal's output stream (the next one opened) breaks for
		// good after 50000 bytes.
		srv.Inject("TaskExecStdioRead", modaltest.Fault{Code: codes.PermissionDenied, Message: "no more output", BreakAfterBytes: 50000, Times: 1})
		term, sc := openTerminal(t, sb, &compute.TerminalOptions{Argv: []string{"sh", "-c", "echo started; yes | head -c 200000; exec sleep 3600"}})
		sc.Expect(`started`)
		var (
			code int
			err  error
		)
		returns(t, "Wait of a terminal whose output broke", func() { code, err = term.Wait() })
		t.Logf("Wait = %d, %v", code, err)
		if err == nil {
			t.Errorf("Wait of a terminal whose output broke = %d, nil; want an error", code)
		}
		if rerr := sc.ReadEnd(); rerr == nil || rerr == io.EOF {
			t.Errorf("Read of a terminal whose output broke ended with %v; want the error", rerr)
		}
	})
}
