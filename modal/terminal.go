package modal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

// A terminal is Modal's PTY exec (SandboxExecParams.PTY): the program runs
// on a pseudo-terminal in the sandbox, its stdout and stderr are that
// terminal's output, and its stdin takes the keystrokes.
//
// The SDK asks Modal for a 24×80 terminal, and Modal has no call to
// resize one: terminalLauncher sets the requested size with stty before
// the program starts (then runs the command launcher, which reports the
// program's pid for Close). Resize reports ErrUnsupported.
//
// The arguments: rows, columns and TERM, then the launcher's own.
const terminalLauncher = `r=$1 c=$2 TERM=$3
export TERM
shift 3
stty rows "$r" cols "$c" 2>/dev/null
` + launcher

// maxTerminalBuffer is how much of a terminal's output is held for a
// reader that has not read it; past it the output waits, as a program
// writing to a terminal nobody reads does.
const maxTerminalBuffer = 1 << 20

// Terminal starts req.Argv on a pseudo-terminal in the sandbox (one PTY
// exec on Modal, plus a file write for an argv longer than one exec
// carries). ctx bounds only the start.
func (s *Sandbox) Terminal(ctx context.Context, req *driver.TerminalRequest) (driver.Terminal, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, errors.New("modal: empty command")
	}
	if why := s.goneReason(); why != "" {
		return nil, stoppedError("terminal", s.id, why, nil)
	}
	if err := checkEnv(req.Env); err != nil {
		return nil, err
	}
	term := req.Env["TERM"]
	if term == "" {
		term = "xterm-256color"
	}
	head := []string{"/bin/sh", "-c", terminalLauncher, "sh", strconv.Itoa(req.Rows), strconv.Itoa(req.Cols), term, "-", req.Dir}
	argv := append(head, req.Argv...)
	if argBytes(argv) > maxArgBytes {
		file, err := s.uploadArgv(ctx, req.Argv)
		if err != nil {
			return nil, err
		}
		head[len(head)-2] = "-f"
		argv = append(head, file)
	}
	// On a terminal stderr is the terminal too: Modal sends it all on
	// stdout, and the stderr stream would stay empty.
	cp, err := s.sb.Exec(ctx, argv, &modalsdk.SandboxExecParams{Env: req.Env, PTY: true, Stderr: modalsdk.Ignore})
	if err != nil {
		return nil, ctxErr(ctx, s.opErr(ctx, "terminal", err))
	}
	// The terminal outlives ctx: a kill that fails later is not ctx's.
	p := s.newProcess(context.WithoutCancel(ctx), cp)
	t := &terminal{p: p, out: newTermBuffer(), hungUp: make(chan struct{})}
	p.run(t.out, nil, true, nil)
	go t.deliver()

	select {
	case <-p.started:
	case <-ctx.Done():
		go func() {
			if err := p.Kill(); err != nil {
				s.s.log.Warn("a terminal whose start was cancelled could not be killed", "sandbox", s.id, "error", err)
			}
			p.abandon(ctx.Err())
		}()
		return nil, ctx.Err()
	}
	if p.notFound {
		return nil, &Error{Op: "terminal", Sandbox: s.id, Kind: driver.ErrCommandNotFound, Msg: fmt.Sprintf("%s: command not found", req.Argv[0])}
	}
	return t, nil
}

var _ driver.Terminaler = (*Sandbox)(nil)

// terminal is a program started by Sandbox.Terminal: a process (see
// exec.go) whose output goes to a buffer that Read drains.
type terminal struct {
	p   *process
	out *termBuffer

	// wmu orders the writes: each is one call at the next offset.
	wmu sync.Mutex

	closeOnce sync.Once
	hungUp    chan struct{} // closed by Close
	closeErr  error
}

// deliver ends the output once the outcome is known: Read returns io.EOF,
// or the error Wait returns, after what came has been read. When the wait
// is cut short (the sandbox was destroyed, Modal stopped answering, see
// process.end), output that would overflow the buffer is dropped rather
// than waited on, so that the outcome is not held up by a reader.
func (t *terminal) deliver() {
	p := t.p
	<-p.ctx.Done()
	t.out.stopWaiting()
	<-p.done
	t.out.finish(p.err)
}

// Read reads the terminal's output. It returns io.EOF once the program
// has exited and its output has been read, or once Close has hung up.
func (t *terminal) Read(b []byte) (int, error) { return t.out.Read(b) }

// Write sends keystrokes: one call to Modal per 4 MiB. It returns when
// Modal has them, when the program has exited or when Close hangs up,
// whichever is first.
func (t *terminal) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), stdinChunk)]
		if err := t.write(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		b = b[len(chunk):]
	}
	return n, nil
}

var errHungUp = errors.New("modal: the terminal was closed")

func (t *terminal) write(b []byte) error {
	p := t.p
	if err := t.ended(); err != nil {
		return err
	}
	data := append([]byte(nil), b...) // the call may outlive Write
	res := make(chan error, 1)
	go func() {
		t.wmu.Lock()
		defer t.wmu.Unlock()
		if t.ended() != nil {
			res <- nil // Write has returned, or is returning, an error
			return
		}
		// The SDK makes this call on a context of its own: one to a Modal
		// that stopped answering ends when the SDK gives up or the
		// connection closes; Write stops waiting for it sooner (below).
		_, err := p.cp.Stdin.Write(data)
		res <- err
	}()
	select {
	case err := <-res:
		if err != nil {
			return p.s.opErr(context.Background(), "terminal", fmt.Errorf("sending keystrokes: %w", err))
		}
		return nil
	case <-t.hungUp:
	case <-p.done:
		// The program exited while the keystrokes were on their way,
		// most often because of them (a line that ends it): the exit can
		// be seen before the call that delivered them returns. With the
		// program gone that call returns promptly; its result says
		// whether Modal had them. (CI: "the terminal's program has
		// exited" for a write whose line the program had answered.)
		select {
		case err := <-res:
			if err == nil {
				return nil
			}
		case <-t.hungUp:
		case <-time.After(exitedWriteGrace):
		}
		return t.ended()
	}
	select {
	case err := <-res:
		if err == nil {
			return nil
		}
	default:
	}
	return t.ended()
}

// exitedWriteGrace bounds how long Write waits, once the program has
// exited, for Modal to answer the call that carried its keystrokes.
const exitedWriteGrace = 5 * time.Second

// ended returns why the terminal takes no more keystrokes, nil while it
// does.
func (t *terminal) ended() error {
	select {
	case <-t.hungUp:
		return errHungUp
	default:
	}
	select {
	case <-t.p.done:
		return &Error{Op: "terminal", Sandbox: t.p.s.id, Msg: "the terminal's program has exited"}
	default:
	}
	return nil
}

// Resize fails: Modal cannot resize a running terminal.
func (t *terminal) Resize(rows, cols int) error {
	return &Error{Op: "terminal", Sandbox: t.p.s.id, Kind: driver.ErrUnsupported,
		Msg: fmt.Sprintf("Modal cannot resize a running terminal (asked for %dx%d): set the size when it starts (TerminalOptions.Rows and Cols)", rows, cols)}
}

// Wait waits for the program's exit code (see process.Wait): after Close,
// at most KillGrace.
func (t *terminal) Wait() (int, error) { return t.p.Wait() }

// Close hangs up: it kills the program and everything it started (see
// process.Kill: at most KillGrace), and Read returns io.EOF from then on.
// Later calls return what the first did.
func (t *terminal) Close() error {
	t.closeOnce.Do(func() {
		close(t.hungUp)
		t.out.hangUp()
		t.closeErr = t.p.Kill()
	})
	return t.closeErr
}

// termBuffer holds a terminal's output between the reader of Modal's
// stream and Read.
type termBuffer struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	buf     []byte
	err     error // what Read returns once buf is drained; nil while output may come
	hungUp  bool  // Close: Read returns io.EOF, the output is dropped
	noWait  bool  // a full buffer drops output instead of waiting
}

func newTermBuffer() *termBuffer { return &termBuffer{changed: make(chan struct{})} }

func (b *termBuffer) broadcastLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Write takes output, waiting while maxTerminalBuffer is unread; once the
// output has ended or been hung up, or with stopWaiting, it drops what
// does not fit.
func (b *termBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.hungUp || b.err != nil || (b.noWait && len(b.buf) >= maxTerminalBuffer) {
			return len(p), nil
		}
		if len(b.buf) < maxTerminalBuffer {
			b.buf = append(b.buf, p...)
			b.broadcastLocked()
			return len(p), nil
		}
		wait := b.changed
		b.mu.Unlock()
		<-wait
		b.mu.Lock()
	}
}

func (b *termBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.hungUp {
			return 0, io.EOF
		}
		if len(b.buf) > 0 {
			n := copy(p, b.buf)
			b.buf = b.buf[n:]
			if len(b.buf) == 0 {
				b.buf = nil
			}
			b.broadcastLocked()
			return n, nil
		}
		if b.err != nil {
			return 0, b.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		wait := b.changed
		b.mu.Unlock()
		<-wait
		b.mu.Lock()
	}
}

// finish ends the output: Read returns err (io.EOF for nil) once what
// was written has been read.
func (b *termBuffer) finish(err error) {
	if err == nil {
		err = io.EOF
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
		b.broadcastLocked()
	}
}

// stopWaiting makes Write drop what does not fit rather than wait.
func (b *termBuffer) stopWaiting() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noWait = true
	b.broadcastLocked()
}

// hangUp drops the output: Read returns io.EOF.
func (b *termBuffer) hangUp() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hungUp = true
	b.buf = nil
	b.broadcastLocked()
}
