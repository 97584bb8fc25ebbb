package modaltest_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"
	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// ptyOutput collects a PTY exec's stdout in the background, so that a
// test can wait for text as a person watches a screen.
type ptyOutput struct {
	t       *testing.T
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{}
	err     error
	done    chan struct{}
}

func watchOutput(t *testing.T, r io.Reader) *ptyOutput {
	o := &ptyOutput{t: t, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			if err != nil && err != io.EOF {
				o.err = err
			}
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

// expect waits until the output matches re and returns the submatches.
func (o *ptyOutput) expect(re string) []string {
	o.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(time.Minute)
	for {
		o.mu.Lock()
		out := o.buf.String()
		changed := o.changed
		o.mu.Unlock()
		if m := rx.FindStringSubmatch(out); m != nil {
			return m
		}
		select {
		case <-changed:
		case <-o.done:
			o.mu.Lock()
			out = o.buf.String()
			o.mu.Unlock()
			if m := rx.FindStringSubmatch(out); m != nil {
				return m
			}
			o.t.Fatalf("the output ended (%v) without %q; it was:\n%q", o.err, re, out)
		case <-timeout:
			o.t.Fatalf("no %q in the output within a minute; it was:\n%q", re, out)
		}
	}
}

// all waits for the end of the output and returns it.
func (o *ptyOutput) all() string {
	o.t.Helper()
	select {
	case <-o.done:
	case <-time.After(time.Minute):
		o.t.Fatal("the output did not end within a minute")
	}
	if o.err != nil {
		o.t.Fatalf("reading the output: %v", o.err)
	}
	return o.buf.String()
}

// Modal's SDK, unchanged, asks for a PTY exec (SandboxExecParams.PTY): the
// command runs on a real pseudo-terminal of the size and TERM the SDK's
// pty_info gives (24×80, xterm-256color), with stdout and stderr both on
// it, stdin typed on it (echoed, edited by the line discipline), and
// Ctrl-C reaching the foreground program.
func TestPTYExecIsATerminal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)

	p, err := sb.Exec(h.ctx, []string{"sh", "-c", `tty; stty size; echo "term=$TERM colorterm=$COLORTERM"
test -t 0 && test -t 1 && test -t 2 && echo all-ttys
echo to-stderr >&2
IFS= read -r line; echo "got<$line>"`}, &modal.SandboxExecParams{PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	out := watchOutput(t, p.Stdout)
	out.expect(`all-ttys\r\n`)
	// Typed keys: the terminal echoes them and erases on Backspace (DEL).
	if _, err := p.Stdin.Write([]byte("hellp\x7fo\r")); err != nil {
		t.Fatal(err)
	}
	got := out.all()
	code, err := p.Wait(h.ctx, nil)
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v; want 0; output:\n%q", code, err, got)
	}
	for _, want := range []string{`^/dev/pts/\d+\r\n`, `\r\n24 80\r\n`, `term=xterm-256color colorterm=truecolor\r\n`, `to-stderr\r\n`, `got<hello>\r\n`} {
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("the PTY exec's output has no %q:\n%q", want, got)
		}
	}
	if stderr, err := io.ReadAll(p.Stderr); err != nil || len(stderr) != 0 {
		t.Errorf("stderr of a PTY exec = %q, %v; want it empty (all output is on stdout)", stderr, err)
	}

	// Ctrl-C: SIGINT to the foreground program, exit 128+2.
	p, err = sb.Exec(h.ctx, []string{"sh", "-c", "echo ready; exec sleep 1000"}, &modal.SandboxExecParams{PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	out = watchOutput(t, p.Stdout)
	out.expect(`ready\r\n`)
	// sleep replaces the shell right after "ready"; a Ctrl-C typed before
	// that ends the shell, with the same status.
	if _, err := p.Stdin.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	out.all()
	if code, err := p.Wait(h.ctx, nil); err != nil || code != 130 {
		t.Errorf("Ctrl-C on a PTY exec: Wait = %d, %v; want 130", code, err)
	}

	// An exec Timeout kills a PTY exec as any other: 137.
	p, err = sb.Exec(h.ctx, []string{"sh", "-c", "echo ready; exec sleep 1000"}, &modal.SandboxExecParams{PTY: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(h.ctx, nil); err != nil || code != 137 {
		t.Errorf("a PTY exec past its Timeout: Wait = %d, %v; want 137", code, err)
	}

	// Without PTY the same command has no terminal.
	stdout, _, _ := h.run(sb, []string{"sh", "-c", "tty; test -t 0 || echo no-tty"}, nil)
	if !strings.Contains(stdout, "no-tty") {
		t.Errorf("an exec without PTY: %q; want no terminal", stdout)
	}
}

// The emulator honours what pty_info asks for, wherever the protocol
// carries it: here a sandbox's entrypoint (SandboxCreateParams.PTY), with
// the pty_info changed on its way (the SDK always sends 24×80) to a size
// and TERM of the test's choosing.
func TestPTYInfoSizeAndTerm(t *testing.T) {
	t.Parallel()
	for _, v2 := range []bool{true, false} {
		name := "V1"
		if v2 {
			name = "V2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, modaltest.Options{})
			rewrite := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				var def *pb.Sandbox
				switch r := req.(type) {
				case *pb.SandboxCreateRequest:
					def = r.GetDefinition()
				case *pb.SandboxCreateV2Request:
					def = r.GetDefinition()
				}
				if info := def.GetPtyInfo(); info != nil {
					info.SetWinszRows(33)
					info.SetWinszCols(111)
					info.SetEnvTerm("vt100")
				}
				return invoker(ctx, method, req, reply, cc, opts...)
			}
			envMu.Lock()
			os.Setenv("MODAL_SERVER_URL", h.srv.URL)
			if !v2 {
				os.Setenv("MODAL_SANDBOX_V2", "0")
			}
			c, err := modal.NewClientWithOptions(&modal.ClientParams{
				TokenID: h.srv.TokenID, TokenSecret: h.srv.TokenSecret,
				Logger:                slog.New(slog.DiscardHandler),
				GRPCUnaryInterceptors: []grpc.UnaryClientInterceptor{rewrite},
			})
			os.Unsetenv("MODAL_SERVER_URL")
			os.Unsetenv("MODAL_SANDBOX_V2")
			envMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			sb, err := c.Sandboxes.Create(h.ctx, h.app, h.image, &modal.SandboxCreateParams{
				PTY:     true,
				Command: []string{"sh", "-c", `tty; stty size; echo "term=$TERM"; IFS= read -r line; echo "got<$line>"; exit 4`},
			})
			if err != nil {
				t.Fatal(err)
			}
			h.release(sb)
			out := watchOutput(t, sb.Stdout)
			out.expect(`term=`)
			if _, err := sb.Stdin.Write([]byte("typed\r")); err != nil {
				t.Fatal(err)
			}
			got := out.all()
			for _, want := range []string{`^/dev/pts/\d+\r\n`, `\r\n33 111\r\n`, `term=vt100\r\n`, `got<typed>\r\n`} {
				if !regexp.MustCompile(want).MatchString(got) {
					t.Errorf("the PTY entrypoint's output has no %q:\n%q", want, got)
				}
			}
			if code, err := sb.Wait(h.ctx, nil); err != nil || code != 4 {
				t.Errorf("Wait = %d, %v; want 4", code, err)
			}
		})
	}
}
