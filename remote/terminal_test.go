package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// termTimeout bounds the waits on a terminal: a guard against hangs, not
// a speed limit.
const termTimeout = 30 * time.Second

// readAll reads a terminal to its end, within termTimeout.
func readAll(t *testing.T, term *compute.Terminal) (string, error) {
	t.Helper()
	type result struct {
		out string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(term)
		ch <- result{string(b), err}
	}()
	select {
	case r := <-ch:
		return r.out, r.err
	case <-time.After(termTimeout):
		term.Close()
		t.Fatalf("the terminal's output did not end within %v", termTimeout)
		return "", nil
	}
}

// TestTerminalErrors checks that what the server refuses before the
// upgrade reaches the caller as the error of its kind.
func TestTerminalErrors(t *testing.T) {
	t.Parallel()
	rp, _, ts := loopback(t, server.Options{Token: "terminal-errors-token"})
	ctx := t.Context()
	c := compute.New(compute.Config{Provider: rp})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	wrong := remote.New(ts.URL, "wrong-token")
	defer wrong.Close()
	// Through the driver: Get would refuse first.
	if _, err := terminalOf(t, wrong, sb.ID()); !errors.Is(err, compute.ErrAuthentication) {
		t.Errorf("Terminal with a wrong token: %v; want ErrAuthentication", err)
	}

	if term, err := sb.Terminal(ctx, &compute.TerminalOptions{Argv: []string{"no-such-program-4242"}}); err != nil {
		if !errors.Is(err, compute.ErrCommandNotFound) {
			t.Errorf("Terminal of a missing program: %v; want ErrCommandNotFound (or exit 127)", err)
		}
	} else {
		readAll(t, term)
		if code, err := term.Wait(); code != 127 || err != nil {
			t.Errorf("Terminal of a missing program: Wait = %d, %v; want ErrCommandNotFound at the start, or exit 127", code, err)
		}
		term.Close()
	}

	dead, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = dead.Terminal(ctx, nil)
	var re *remote.Error
	if !errors.Is(err, compute.ErrNotFound) || !errors.As(err, &re) || re.StatusCode != 404 || re.Code != wire.CodeSandboxNotFound {
		t.Errorf("Terminal in a destroyed sandbox: %v; want ErrNotFound from a *remote.Error 404 %s", err, wire.CodeSandboxNotFound)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sb.Terminal(cancelled, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Terminal with a cancelled context: %v; want context.Canceled", err)
	}

	// A server from before terminals answers "no endpoint".
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":"no endpoint GET %s","code":%q}`, r.URL.Path, wire.CodeNotFound)
	}))
	defer old.Close()
	op := remote.New(old.URL, "")
	defer op.Close()
	if _, err := terminalOf(t, op, "sb-1"); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("Terminal on a server without terminals: %v; want ErrUnsupported", err)
	}
}

// terminalOf opens a terminal in sandbox id through the driver, without
// asking the server for the sandbox first.
func terminalOf(t *testing.T, p *remote.Provider, id string) (driver.Terminal, error) {
	t.Helper()
	sb := remote.SandboxOf(p, id)
	term, err := sb.Terminal(t.Context(), &driver.TerminalRequest{Argv: []string{"/bin/true"}, Rows: 24, Cols: 80, Env: map[string]string{"TERM": "xterm"}})
	if term != nil {
		t.Cleanup(func() { term.Close() })
	}
	return term, err
}

// TestTerminalServerEnds checks a terminal that the server ends: Wait
// returns the server's error (a *remote.Error with its code), Read ends
// in io.EOF.
func TestTerminalServerEnds(t *testing.T) {
	t.Parallel()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	defer p.Close()
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	rp := remote.New(ts.URL, "")
	defer rp.Close()
	sb, err := compute.New(compute.Config{Provider: rp}).Create(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	term, err := sb.Terminal(t.Context(), &compute.TerminalOptions{Argv: []string{"/bin/sh", "-c", "echo up; exec sleep 60.3131"}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	buf := make([]byte, 64)
	if n, err := term.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "up") {
		t.Fatalf("first Read = %q, %v; want the program's first line", buf[:n], err)
	}
	srv.Close() // ends every request at once, then destroys the sandboxes
	out, err := readAll(t, term)
	if err != nil {
		t.Errorf("Read after the server ended the terminal: %q, %v; want io.EOF", out, err)
	}
	code, err := term.Wait()
	var re *remote.Error
	if !errors.As(err, &re) || re.Code != wire.CodeUnavailable || code != -1 {
		t.Errorf("Wait after the server shut down = %d, %v; want -1 and a *remote.Error with code %s", code, err, wire.CodeUnavailable)
	}
	if _, err := term.Write([]byte("x")); err == nil {
		t.Errorf("Write to a terminal the server ended: nil error")
	}
}

// noResize is a provider whose terminals cannot change size, as Modal's.
type noResize struct{ driver.Provider }

type noResizeSandbox struct{ driver.Sandbox }

type noResizeTerminal struct{ driver.Terminal }

func (p noResize) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	sb, err := p.Provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	return noResizeSandbox{sb}, nil
}

func (p noResize) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	sb, err := p.Provider.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return noResizeSandbox{sb}, nil
}

func (s noResizeSandbox) Terminal(ctx context.Context, req *driver.TerminalRequest) (driver.Terminal, error) {
	t, err := s.Sandbox.(driver.Terminaler).Terminal(ctx, req)
	if err != nil {
		return nil, err
	}
	return noResizeTerminal{t}, nil
}

func (noResizeTerminal) Resize(int, int) error {
	return fmt.Errorf("this provider cannot resize a running terminal: %w", driver.ErrUnsupported)
}

// TestTerminalResizeUnsupported checks a server whose provider cannot
// resize: the server's warning makes later Resizes return
// ErrUnsupported, and the terminal goes on.
func TestTerminalResizeUnsupported(t *testing.T) {
	t.Parallel()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	defer p.Close()
	srv := server.New(noResize{p}, server.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	rp := remote.New(ts.URL, "")
	defer rp.Close()
	sb, err := compute.New(compute.Config{Provider: rp}).Create(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	term, err := sb.Terminal(t.Context(), &compute.TerminalOptions{Argv: []string{"/bin/sh", "-c", "read -r l; stty size"}, Rows: 30, Cols: 90})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var got error
	for deadline := time.Now().Add(termTimeout); got == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = term.Resize(40, 120)
	}
	if !errors.Is(got, compute.ErrUnsupported) {
		t.Errorf("Resize on a server whose provider cannot resize: %v; want ErrUnsupported (after the server's warning)", got)
	}
	if _, err := term.Write([]byte("\r")); err != nil {
		t.Fatal(err)
	}
	if out, _ := readAll(t, term); !strings.Contains(out, "30 90\r\n") {
		t.Errorf("output %q; want the initial size 30 90, kept", out)
	}
	if code, err := term.Wait(); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v; want 0, nil", code, err)
	}
}

// TestTerminalVolume moves a lot both ways: 300 000 keystrokes (more
// than one message, more than the terminal's buffers) reach the program
// whole, and 200 000 lines of output arrive whole and in order.
func TestTerminalVolume(t *testing.T) {
	t.Parallel()
	rp, _, _ := loopback(t, server.Options{})
	sb, err := compute.New(compute.Config{Provider: rp}).Create(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const in = 300000
	term, err := sb.Terminal(t.Context(), &compute.TerminalOptions{Argv: []string{"/bin/sh", "-c", "stty raw -echo; echo ready; head -c " + strconv.Itoa(in) + " | wc -c"}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	buf := make([]byte, 64)
	if n, err := term.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("first Read = %q, %v; want ready", buf[:n], err)
	}
	if n, err := term.Write([]byte(strings.Repeat("x", in))); n != in || err != nil {
		t.Fatalf("Write of %d bytes = %d, %v", in, n, err)
	}
	if out, err := readAll(t, term); strings.TrimSpace(out) != strconv.Itoa(in) || err != nil {
		t.Errorf("the program counted %q (%v); want %d", out, err, in)
	}

	const lines = 200000
	term, err = sb.Terminal(t.Context(), &compute.TerminalOptions{Argv: []string{"seq", "1", strconv.Itoa(lines)}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	out, err := readAll(t, term)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteString("\r\n")
	}
	if out != want.String() {
		t.Errorf("seq 1 %d: %d bytes, not the %d of its lines in order", lines, len(out), want.Len())
	}
	if code, err := term.Wait(); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v", code, err)
	}
}

// BenchmarkTerminalEcho measures a keystroke's round trip through the
// server: sent, echoed by the terminal, read back.
func BenchmarkTerminalEcho(b *testing.B) {
	rp := benchProvider(b)
	sb, err := compute.New(compute.Config{Provider: rp}).Create(b.Context(), nil)
	if err != nil {
		b.Fatal(err)
	}
	term, err := sb.Terminal(b.Context(), &compute.TerminalOptions{Argv: []string{"/bin/sh", "-c", "stty raw; echo ready; cat >/dev/null"}})
	if err != nil {
		b.Fatal(err)
	}
	defer term.Close()
	buf := make([]byte, 64)
	if _, err := term.Read(buf); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := term.Write([]byte("k")); err != nil {
			b.Fatal(err)
		}
		if n, err := term.Read(buf); n != 1 || err != nil {
			b.Fatalf("echo: %q, %v", buf[:n], err)
		}
	}
}

// BenchmarkTerminalOutput measures output throughput: 64 MiB through the
// pseudo-terminal, the server and the socket.
func BenchmarkTerminalOutput(b *testing.B) {
	rp := benchProvider(b)
	sb, err := compute.New(compute.Config{Provider: rp}).Create(b.Context(), nil)
	if err != nil {
		b.Fatal(err)
	}
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		term, err := sb.Terminal(b.Context(), &compute.TerminalOptions{Argv: []string{"/bin/sh", "-c", "stty raw; head -c " + strconv.Itoa(size) + " /dev/zero"}})
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, term)
		if n != size || err != nil {
			b.Fatalf("read %d bytes, %v; want %d", n, err, size)
		}
		term.Close()
	}
}

func benchProvider(b *testing.B) *remote.Provider {
	p, err := local.New(local.Options{})
	if err != nil {
		b.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	rp := remote.New(ts.URL, "")
	b.Cleanup(func() {
		rp.Close()
		srv.Close()
		ts.Close()
		p.Close()
	})
	return rp
}
