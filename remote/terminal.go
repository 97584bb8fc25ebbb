package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

const (
	// termWriteChunk is the most keystrokes one binary message carries
	// (the server takes messages up to 1 MiB).
	termWriteChunk = 32 << 10
	// termBuffer is how much output is held for Read; past it the socket
	// is not read until Read takes some, and the server's program waits.
	termBuffer = 1 << 20
	// termReadLimit is the largest message taken from the server (its
	// frames carry at most 64 KiB).
	termReadLimit = 4 << 20
)

var _ driver.Terminaler = (*Sandbox)(nil)

// Terminal starts req.Argv on a pseudo-terminal in the sandbox, over the
// server's WebSocket endpoint (GET .../sandboxes/{id}/terminal, protocol
// wire.TerminalSubprotocol), and returns once the server has started it.
// A reply before the upgrade keeps its kind, as every call's:
// driver.ErrNotFound for an unknown sandbox, driver.ErrInvalid,
// driver.ErrCommandNotFound; a server without terminals (an older one)
// driver.ErrUnsupported. ctx bounds only the start.
//
// The terminal lives on the socket: closing it (Close), or losing the
// connection, hangs it up on the server.
func (s *Sandbox) Terminal(ctx context.Context, req *driver.TerminalRequest) (driver.Terminal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.p.urlErr != nil {
		return nil, s.p.urlErr
	}
	u := s.p.base + wire.TerminalPath(s.id) + "?" + wire.TerminalQuery(req).Encode()
	h := http.Header{}
	if s.p.token != "" {
		h.Set("Authorization", "Bearer "+s.p.token)
	}
	h.Set("User-Agent", "compute-remote/1")
	// The socket outlives ctx: it is the terminal's lifeline.
	sockCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	conn, resp, err := websocket.Dial(sockCtx, u, &websocket.DialOptions{
		HTTPClient:   s.p.client,
		HTTPHeader:   h,
		Subprotocols: []string{wire.TerminalSubprotocol},
	})
	if !stop() || err != nil {
		cancel()
		if conn != nil {
			conn.CloseNow()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			err = errorFrom(resp)
			var re *Error
			if errors.As(err, &re) && re.Code == wire.CodeNotFound {
				// No such endpoint: a server from before terminals.
				return nil, fmt.Errorf("remote: terminal in sandbox %s: the server has no terminal endpoint (%v); update it: %w", s.id, err, driver.ErrUnsupported)
			}
		}
		return nil, fmt.Errorf("remote: terminal in sandbox %s: %w", s.id, err)
	}
	if p := conn.Subprotocol(); p != wire.TerminalSubprotocol {
		cancel()
		conn.CloseNow()
		return nil, fmt.Errorf("remote: terminal in sandbox %s: the server answered with WebSocket subprotocol %q, not %s: %w", s.id, p, wire.TerminalSubprotocol, driver.ErrUnsupported)
	}
	conn.SetReadLimit(termReadLimit)
	t := &terminal{id: s.id, conn: conn, ctx: sockCtx, cancel: cancel, done: make(chan struct{}), loopDone: make(chan struct{})}
	t.cond = sync.NewCond(&t.mu)
	go t.readLoop()
	return t, nil
}

// terminal is a driver.Terminal on a server's WebSocket.
type terminal struct {
	id     string
	conn   *websocket.Conn
	ctx    context.Context // the socket's; cancelling it cuts the socket
	cancel context.CancelFunc

	mu     sync.Mutex
	cond   *sync.Cond // output arrived or was taken, or the stream ended
	data   []chunk    // output not read yet
	queued int        // bytes in data
	ended  bool       // the socket is done: no more output
	// readErr is what Read returns once data is drained: io.EOF, or why
	// the connection failed.
	readErr error
	closed  bool // Close was called
	// unsupported is the server's warning that the provider cannot
	// resize, which every later Resize returns.
	unsupported error

	done     chan struct{} // closed once code and waitErr are set
	code     int
	waitErr  error
	result   sync.Once
	close    sync.Once
	loopDone chan struct{}
}

// readLoop reads the socket until it closes: output into data, the
// server's messages into the terminal's state.
func (t *terminal) readLoop() {
	defer close(t.loopDone)
	for {
		typ, r, err := t.conn.Reader(t.ctx)
		if err != nil {
			t.finish(err)
			return
		}
		switch typ {
		case websocket.MessageBinary:
			if err := t.readOutput(r); err != nil {
				t.finish(err)
				return
			}
		case websocket.MessageText:
			b, err := io.ReadAll(r)
			if err != nil {
				t.finish(err)
				return
			}
			var m wire.TerminalMessage
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch m.Type {
			case wire.TerminalExit:
				if m.ExitCode != nil {
					t.setResult(*m.ExitCode, nil)
				}
			case wire.TerminalError:
				t.setResult(-1, fmt.Errorf("remote: terminal in sandbox %s: %w", t.id, newError(0, wire.ErrorResponse{Error: m.Error, Code: m.Code})))
			case wire.TerminalWarning:
				werr := newError(0, wire.ErrorResponse{Error: m.Error, Code: m.Code})
				if errors.Is(werr, driver.ErrUnsupported) {
					t.mu.Lock()
					t.unsupported = fmt.Errorf("remote: resize terminal in sandbox %s: %w", t.id, werr)
					t.mu.Unlock()
				}
			}
		}
	}
}

// readOutput queues a binary message for Read, in buffers of the pool.
func (t *terminal) readOutput(r io.Reader) error {
	for {
		bp := outputPool.Get().(*[]byte)
		n, err := io.ReadFull(r, *bp)
		switch {
		case n == 0:
			outputPool.Put(bp)
		case n < len(*bp)/2:
			// A small message (an echo) does not hold a whole buffer.
			t.push(chunk{b: bytes.Clone((*bp)[:n])})
			outputPool.Put(bp)
		default:
			t.push(chunk{b: (*bp)[:n], pooled: bp})
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// outputPool holds the buffers output is read into; a buffer queued for
// Read is at least half full, so the queue takes at most twice
// termBuffer.
var outputPool = sync.Pool{New: func() any {
	b := make([]byte, 64<<10)
	return &b
}}

// chunk is output waiting for Read.
type chunk struct {
	b      []byte
	pooled *[]byte // b's buffer, to give back to outputPool once read
}

// push queues output for Read, waiting while the queue is full.
func (t *terminal) push(c chunk) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.queued >= termBuffer && !t.closed {
		t.cond.Wait()
	}
	if t.closed {
		return
	}
	t.data = append(t.data, c)
	t.queued += len(c.b)
	t.cond.Broadcast()
}

// finish records the end of the socket, with err the reason it gave.
func (t *terminal) finish(err error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	var lost error
	select {
	case <-t.done: // the exit status (or the server's error) came first
	default:
		if closed {
			lost = fmt.Errorf("remote: terminal in sandbox %s was closed before its exit status arrived", t.id)
		} else if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			lost = fmt.Errorf("remote: terminal in sandbox %s: the server closed the connection without an exit status", t.id)
		} else {
			lost = fmt.Errorf("remote: terminal in sandbox %s: connection lost: %w", t.id, err)
		}
		t.setResult(-1, lost)
	}
	t.mu.Lock()
	t.ended = true
	t.readErr = io.EOF
	if lost != nil && !closed {
		t.readErr = lost
	}
	t.cond.Broadcast()
	t.mu.Unlock()
}

func (t *terminal) setResult(code int, err error) {
	t.result.Do(func() {
		t.code, t.waitErr = code, err
		close(t.done)
	})
}

// Read reads the program's terminal output. After the program has
// exited and its output has been read, it returns io.EOF; when the
// connection was lost before that, the error says so.
func (t *terminal) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.data) == 0 && !t.ended && !t.closed {
		t.cond.Wait()
	}
	if t.closed {
		return 0, io.EOF
	}
	if len(t.data) == 0 {
		return 0, t.readErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for n < len(p) && len(t.data) > 0 {
		first := &t.data[0]
		c := copy(p[n:], first.b)
		n += c
		first.b = first.b[c:]
		if len(first.b) == 0 {
			if first.pooled != nil {
				outputPool.Put(first.pooled)
			}
			*first = chunk{}
			t.data = t.data[1:]
		}
	}
	t.queued -= n
	t.cond.Broadcast()
	return n, nil
}

// Write sends keystrokes, in messages of at most termWriteChunk bytes.
func (t *terminal) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := min(len(p)-n, termWriteChunk)
		if err := t.conn.Write(t.ctx, websocket.MessageBinary, p[n:n+c]); err != nil {
			return n, fmt.Errorf("remote: terminal in sandbox %s: %w", t.id, err)
		}
		n += c
	}
	return n, nil
}

// Resize asks the server to resize the terminal. The server answers only
// a failure, so Resize returns once the request is sent; when the server
// reports that its provider cannot resize, that error (matching
// driver.ErrUnsupported) is returned by every later Resize.
func (t *terminal) Resize(rows, cols int) error {
	t.mu.Lock()
	unsupported := t.unsupported
	t.mu.Unlock()
	if unsupported != nil {
		return unsupported
	}
	b, _ := json.Marshal(&wire.TerminalMessage{Type: wire.TerminalResize, Rows: rows, Cols: cols})
	if err := t.conn.Write(t.ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("remote: resize terminal in sandbox %s: %w", t.id, err)
	}
	return nil
}

// Wait waits for the server's word on the program: its exit code, or the
// error that ended the terminal (the server shutting down, the sandbox
// gone, the connection lost).
func (t *terminal) Wait() (int, error) {
	<-t.done
	return t.code, t.waitErr
}

// Close hangs up: it closes the socket, and the server stops the program
// and everything it started on the terminal. Read and Wait return.
func (t *terminal) Close() error {
	t.close.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.cond.Broadcast()
		t.mu.Unlock()
		t.conn.Close(websocket.StatusNormalClosure, "") // a few seconds at most
		t.cancel()
		<-t.loopDone
	})
	return nil
}
