package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// Terminals: GET /api/compute/v1/sandboxes/{id}/terminal runs a program
// on a pseudo-terminal in the sandbox (compute.Sandbox.Terminal) and
// carries it over a WebSocket, as package wire describes.
//
// The request goes through the middleware as every other: the token (in
// the Authorization header, or offered as the subprotocol
// wire.BearerSubprotocol by a browser, which cannot set headers), the
// loopback-only rule of a server without one, tenants. Everything that
// can fail is checked, and the program started, before the upgrade, so
// that failures are ordinary v1 error replies.
//
// Lifetimes. A terminal holds its sandbox in use (the idle reaper leaves
// it alone) until it ends: when the program exits (a text frame
// {"type":"exit","exitCode":N}, then a normal close), when the client
// closes the socket or goes away (the terminal is hung up: the program
// and everything it started are stopped), or with a text frame
// {"type":"error","error":MSG,"code":CODE} when the server is shutting
// down (code unavailable: like every request in flight, a terminal may go
// on until Shutdown's context ends; Close ends it at once), when the
// sandbox ends, or when the terminal has had no input and no output for
// Options.RequestTimeout (code timeout).
//
// That last rule replaces the request timeout, which a terminal does not
// have: an interactive session lasts as long as someone uses it, which no
// fixed bound fits, while a terminal forgotten in a browser tab must not
// hold its sandbox forever. Keystrokes and output both count as use; the
// WebSocket's pings do not. A negative RequestTimeout ("none") keeps
// idle terminals open.
//
// Flow control. The program's output is read in chunks of termChunk
// bytes into a queue of termQueue chunks and sent as binary frames of up
// to termFrame bytes, coalescing what has queued up while the previous
// frame was being sent. When the client reads slowly, the frame write
// blocks, the queue fills, the reading stops, and the pseudo-terminal's
// own buffer stops the program: the server holds at most
// termQueue×termChunk + termFrame bytes of output per terminal, whatever
// the program writes. Keystrokes go to the program as they arrive; a
// program that does not read them stops the reading of the socket, and
// TCP stops the client. A client message may be at most termReadLimit
// bytes (a larger one closes the socket with status 1009).
//
// Keep-alive. After pingEvery (15 s) without traffic the server sends a
// WebSocket ping, so that proxies do not close an idle socket. The pong
// is not a condition of life: a dead peer is found by TCP (keep-alives,
// write errors) and by the idle rule above.
//
// Origin. websocket.Accept refuses by default a handshake whose Origin is
// not the Host, to stop cross-site WebSocket hijacking, an attack on
// credentials that the browser sends by itself (cookies). This server
// has none: with a token, a page must hold the token and send it, which
// no other site's page can; without one, the middleware has refused
// every page that is not on this machine (the same rule as for every
// endpoint, and a page on this machine may fetch them all). So Accept is
// told not to check again. The one case left is a server without a
// token that serves other machines (AllowUnauthenticatedRemote, behind
// an authenticating proxy, which may well use cookies): there the
// handshake must come from a page of the server's own origin, checked
// here before the program starts.

const (
	// termChunk is the most output read from the terminal at once.
	termChunk = 32 << 10
	// termQueue is how many chunks wait for the socket.
	termQueue = 8
	// termFrame is the most output one binary frame carries.
	termFrame = 64 << 10
	// termReadLimit is the largest message a client may send (a paste).
	termReadLimit = 1 << 20
	// termCloseGrace is how long a terminal that is ending waits for its
	// client to take what is left before the socket is cut.
	termCloseGrace = 5 * time.Second
)

// termPingEvery is how long a terminal's socket may be silent before the
// server pings it (a variable for tests).
var termPingEvery = pingEvery

// terminalRoute is the terminal endpoint's pattern.
const terminalRoute = "GET " + wire.V1Path + "/sandboxes/{id}/terminal"

// isTerminal reports whether r is for the terminal endpoint, which has
// no request timeout (see above).
func (s *Server) isTerminal(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/terminal") {
		return false
	}
	_, pattern := s.mux.Handler(r)
	return pattern == terminalRoute
}

// v1Terminal serves the terminal endpoint.
func (s *Server) v1Terminal(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "terminal", id)
	req, err := wire.ParseTerminalQuery(r.URL.Query())
	if err != nil {
		return err // ErrInvalid: 400
	}
	if err := checkHandshake(r); err != nil {
		return err
	}
	if err := s.checkOrigin(r); err != nil {
		return err
	}
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release() // the sandbox is in use until the terminal ends

	startCtx := r.Context()
	if s.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(startCtx, s.opts.RequestTimeout)
		defer cancel()
	}
	term, err := e.sb.Terminal(startCtx, &compute.TerminalOptions{Argv: req.Argv, Env: req.Env, Dir: req.Dir, Rows: req.Rows, Cols: req.Cols})
	if err != nil {
		s.gone(e, err)
		return err
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{wire.TerminalSubprotocol},
		// Checked by the middleware and checkOrigin: see above.
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has answered; the error goes to the access log.
		term.Close()
		term.Wait()
		return err
	}
	conn.SetReadLimit(termReadLimit)
	return s.runTerminal(r.Context(), e, conn, term)
}

// checkHandshake refuses, before a program is started for nothing, a
// request that websocket.Accept would refuse or a client that does not
// speak the protocol.
func checkHandshake(r *http.Request) error {
	if !isWebSocket(r) {
		return badRequest("this endpoint is a WebSocket: send a WebSocket handshake (GET with \"Connection: Upgrade\" and \"Upgrade: websocket\"), as websocat or a browser's WebSocket do")
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return badRequest("WebSocket version %q is not supported: want 13", v)
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))); err != nil || len(k) != 16 {
		return badRequest("the WebSocket handshake has no valid Sec-WebSocket-Key")
	}
	var offered []string
	for _, p := range subprotocols(r) {
		if !strings.HasPrefix(p, wire.BearerSubprotocolPrefix) {
			offered = append(offered, p)
		}
	}
	if len(offered) > 0 && !slices.Contains(offered, wire.TerminalSubprotocol) {
		return badRequest("this endpoint speaks the WebSocket subprotocol %s, which the client did not offer (it offered %s)", wire.TerminalSubprotocol, strings.Join(offered, ", "))
	}
	return nil
}

// checkOrigin applies the one Origin rule the middleware leaves to this
// endpoint (see above): a server without a token that serves other
// machines opens terminals only to pages of its own origin.
func (s *Server) checkOrigin(r *http.Request) error {
	if s.authenticated() || !s.opts.AllowUnauthenticatedRemote {
		return nil
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	if u, err := url.Parse(o); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	return errorf(wire.CodeForbidden, "refused a terminal to the web page %q: this server has no token, so only pages of its own origin (%s) may open terminals; its operator can set a token (compute serve --token, server.Options.Token)", o, r.Host)
}

// termSession is one terminal carried over one WebSocket.
type termSession struct {
	s    *Server
	conn *websocket.Conn
	term *compute.Terminal
	// connCtx bounds the socket's reads and writes: cancelling it cuts
	// the socket (the library closes it when a read's or write's context
	// ends).
	connCtx context.Context

	last     atomic.Int64 // UnixNano of the last input or output
	lastPing atomic.Int64 // UnixNano of the last ping
	inBusy   atomic.Bool  // a write of keystrokes to the terminal is blocked
	outBusy  atomic.Bool  // a frame of output is being sent
	pinging  atomic.Bool
}

func (ts *termSession) touch() { ts.last.Store(time.Now().UnixNano()) }

// runTerminal carries term over conn until the terminal ends, and
// returns why it ended, for the access log (nil for an exit or a client
// that hung up).
func (s *Server) runTerminal(ctx context.Context, e *entry, conn *websocket.Conn, term *compute.Terminal) error {
	defer term.Close() // after an exit too: it frees what the provider holds
	connCtx, cutConn := context.WithCancel(context.WithoutCancel(ctx))
	ts := &termSession{s: s, conn: conn, term: term, connCtx: connCtx}
	ts.touch()
	var wg sync.WaitGroup
	queue := make(chan []byte, termQueue)
	outDone := make(chan struct{})  // all output sent (or dropped: the socket broke)
	writeErr := make(chan error, 1) // the socket broke while sending
	readStop := make(chan struct{}) // the session is over: stop reading
	defer func() {
		// The socket is closed by now: every goroutine is ending.
		close(readStop)
		cutConn()
		wg.Wait()
	}()

	// The program's output: terminal → queue → frames.
	wg.Go(func() {
		defer close(queue)
		for {
			buf := chunkPool.Get().(*[]byte)
			n, err := term.Read(*buf)
			if n > 0 {
				select {
				case queue <- (*buf)[:n]:
				case <-readStop:
					return
				}
			} else {
				chunkPool.Put(buf)
			}
			if err != nil {
				return // io.EOF: the program exited and its output is read
			}
		}
	})
	wg.Go(func() {
		defer close(outDone)
		ts.sendOutput(queue, writeErr)
	})

	// Keystrokes and control messages: socket → terminal.
	inputErr := make(chan error, 1)
	wg.Go(func() { inputErr <- ts.receive() })

	type exit struct {
		code int
		err  error
	}
	exited := make(chan exit, 1)
	wg.Go(func() {
		code, err := term.Wait()
		exited <- exit{code, err}
	})

	idle := s.opts.RequestTimeout
	every := termPingEvery
	if idle > 0 {
		every = min(every, max(idle/4, 10*time.Millisecond))
	}
	tick := time.NewTicker(every)
	defer tick.Stop()

	var (
		final      *wire.TerminalMessage // the last frame, when the server ends the terminal
		result     error                 // for the access log
		clientGone bool
		ending     bool
		outEnded   bool
		res        *exit
		shutdown   = ctx.Done()
		grace      <-chan time.Time
	)
	end := func() {
		if !ending {
			ending = true
			term.Close()
			// A client that does not take what is left in time is cut.
			grace = time.After(termCloseGrace)
		}
	}
	for !outEnded || res == nil {
		select {
		case <-outDone:
			outEnded = true
			outDone = nil
		case r := <-exited:
			res = &r
		case err := <-inputErr:
			// Closed by the client (a close frame, or the connection
			// went away), or a message too large or not WebSocket:
			// hang up.
			if !ending {
				clientGone = true
				if websocket.CloseStatus(err) == -1 {
					s.log.Debug("server: terminal socket ended without a close frame", "sandbox", e.sb.ID(), "error", err)
				}
			}
			end()
		case <-writeErr:
			clientGone = true
			end()
		case <-shutdown:
			shutdown = nil
			if !ending {
				final = errorMessage(errShuttingDown)
				result = errShuttingDown
			}
			end()
		case <-grace:
			grace = nil
			clientGone = true
			cutConn()
		case now := <-tick.C:
			if ending {
				continue
			}
			quiet := now.Sub(time.Unix(0, ts.last.Load()))
			if idle > 0 && quiet >= idle {
				ae := errorf(wire.CodeTimeout, "the terminal had no input and no output for %v, the server's request timeout (compute serve --request-timeout, server.Options.RequestTimeout), and was closed", idle)
				final, result = errorMessage(ae), ae
				end()
				continue
			}
			if quiet >= termPingEvery && now.Sub(time.Unix(0, ts.lastPing.Load())) >= termPingEvery && ts.idleSocket() {
				ts.ping(&wg)
			}
		}
	}
	if final == nil && !clientGone {
		if res.err != nil {
			ae := s.classify(ctx, res.err)
			final, result = errorMessage(ae), res.err
			s.gone(e, res.err)
		} else {
			code := res.code
			final = &wire.TerminalMessage{Type: wire.TerminalExit, ExitCode: &code}
		}
	}
	if clientGone || final == nil {
		conn.CloseNow()
		return result
	}
	b, _ := json.Marshal(final)
	wctx, cancel := context.WithTimeout(connCtx, termCloseGrace)
	err := conn.Write(wctx, websocket.MessageText, b)
	cancel()
	if err != nil {
		conn.CloseNow()
		return result
	}
	// A normal close: the client has had everything. Close waits (5 s at
	// most) for the client's answer to the close frame.
	conn.Close(websocket.StatusNormalClosure, "")
	return result
}

// errorMessage is the error frame for ae.
func errorMessage(ae *apiError) *wire.TerminalMessage {
	return &wire.TerminalMessage{Type: wire.TerminalError, Error: ae.msg, Code: ae.code}
}

// sendOutput sends the queued output as binary frames, coalescing what
// queued up meanwhile, until the queue is closed. When the socket breaks
// it says so on broken and drops the rest, so that the reader of the
// terminal is never stuck.
func (ts *termSession) sendOutput(queue <-chan []byte, broken chan<- error) {
	frame := make([]byte, 0, termFrame+termChunk)
	failed := false
	take := func(chunk []byte) {
		frame = append(frame, chunk...)
		chunk = chunk[:cap(chunk)]
		chunkPool.Put(&chunk)
	}
	for chunk := range queue {
		if failed {
			take(chunk)
			frame = frame[:0]
			continue
		}
		frame = frame[:0]
		take(chunk)
	coalesce:
		for len(frame) < termFrame {
			select {
			case more, ok := <-queue:
				if !ok {
					break coalesce
				}
				take(more)
			default:
				break coalesce
			}
		}
		for off := 0; off < len(frame) && !failed; off += termFrame {
			ts.outBusy.Store(true)
			err := ts.conn.Write(ts.connCtx, websocket.MessageBinary, frame[off:min(off+termFrame, len(frame))])
			ts.outBusy.Store(false)
			ts.touch()
			if err != nil {
				failed = true
				broken <- err
			}
		}
	}
}

// chunkPool holds the buffers that output is read into.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, termChunk)
	return &b
}}

// receive passes keystrokes (binary frames) to the terminal and acts on
// control messages (text frames) until the socket is closed or fails,
// and returns why.
func (ts *termSession) receive() error {
	for {
		typ, data, err := ts.conn.Read(ts.connCtx)
		if err != nil {
			return err
		}
		ts.touch()
		switch typ {
		case websocket.MessageBinary:
			if len(data) == 0 {
				continue
			}
			ts.inBusy.Store(true)
			// An error is a program that has ended: its end comes through
			// the output and Wait.
			ts.term.Write(data)
			ts.inBusy.Store(false)
			ts.touch()
		case websocket.MessageText:
			ts.control(data)
		}
	}
}

// control acts on a text frame. Failures are warnings: the terminal goes
// on.
func (ts *termSession) control(data []byte) {
	var m wire.TerminalMessage
	if err := json.Unmarshal(data, &m); err != nil {
		ts.warn(badRequest("a text frame is not a JSON message: want {\"type\":\"resize\",\"rows\":R,\"cols\":C}; keystrokes go in binary frames"))
		return
	}
	switch m.Type {
	case wire.TerminalResize:
		if err := ts.term.Resize(m.Rows, m.Cols); err != nil {
			ts.warn(ts.s.classify(ts.connCtx, err))
		}
	default:
		ts.warn(badRequest("unknown message type %q: a client sends {\"type\":\"resize\",\"rows\":R,\"cols\":C} in text frames, keystrokes in binary frames", m.Type))
	}
}

// warn sends a warning frame.
func (ts *termSession) warn(ae *apiError) {
	b, _ := json.Marshal(&wire.TerminalMessage{Type: wire.TerminalWarning, Error: ae.msg, Code: ae.code})
	ts.conn.Write(ts.connCtx, websocket.MessageText, b)
}

// idleSocket reports whether nothing is being written either way, so
// that a ping goes out at once (a ping whose write waited behind a
// blocked frame would cut the socket after 5 s: the library bounds
// control frames so) and the client can answer it (a client that is
// itself blocked writing keystrokes cannot).
func (ts *termSession) idleSocket() bool {
	return !ts.outBusy.Load() && !ts.inBusy.Load() && !ts.pinging.Load()
}

// ping sends a WebSocket ping, so that proxies see traffic. Its pong is
// awaited in the background and not required.
func (ts *termSession) ping(wg *sync.WaitGroup) {
	ts.pinging.Store(true)
	ts.lastPing.Store(time.Now().UnixNano())
	wg.Go(func() {
		defer ts.pinging.Store(false)
		ts.conn.Ping(ts.connCtx)
	})
}
