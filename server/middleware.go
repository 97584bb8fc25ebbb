package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/server/wire"
)

// The middleware every request goes through: authentication, limits
// (timeout, body and write deadlines), panics turned into 500s.

// servePublic serves an endpoint that needs no token.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request) error) {
	rw := &respWriter{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	info := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	defer s.accessLog(r, rw, info, start)
	if err := h(rw, r); err != nil {
		s.writeError(rw, r, flavorV1, err)
	}
}

// serve runs one request through auth, limits and logging.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, fl flavor, h func(http.ResponseWriter, *http.Request) error) {
	rw := &respWriter{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	info := &reqInfo{}
	ctx := context.WithValue(r.Context(), reqInfoKey{}, info)
	r = r.WithContext(ctx)
	defer s.accessLog(r, rw, info, start)

	if !s.requests.add() {
		w.Header().Set("Connection", "close")
		s.writeError(rw, r, fl, errShuttingDown)
		return
	}
	defer s.requests.done()

	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("server: handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				s.writeError(rw, r, fl, errorf(wire.CodeInternal, "internal server error (logged by the server)"))
			} else {
				panic(http.ErrAbortHandler) // cut the response short rather than end it cleanly
			}
		}
	}()

	if !s.authenticated() && !s.opts.AllowUnauthenticatedRemote {
		if why := notLocal(r); why != "" {
			s.writeError(rw, r, fl, errorf(wire.CodeForbidden,
				"this server has no token, so it serves only this machine: refused %s; its operator must set a token (compute serve --token or $COMPUTE_TOKEN, server.Options.Token)", why))
			return
		}
	}
	who, ok := s.authorize(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="compute"`)
		s.writeError(rw, r, fl, errUnauthorized)
		return
	}
	s.conns.authenticated(r)
	ctx = context.WithValue(ctx, callerKey{}, who)

	// The request's context ends at its timeout, when the client goes
	// away, or when Shutdown gives up waiting; blocked body reads and
	// writes are cut at the same moment. A terminal has no timeout: it
	// lasts while it is in use, and ends after RequestTimeout without
	// input or output (terminal.go).
	var cancel context.CancelFunc
	if s.opts.RequestTimeout > 0 && !s.isTerminal(r) {
		ctx, cancel = context.WithTimeout(ctx, s.opts.RequestTimeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	stopBase := context.AfterFunc(s.base, cancel)
	defer stopBase()
	dl := &deadlines{rc: http.NewResponseController(w), bodyDone: r.Body == nil || r.Body == http.NoBody}
	if d, ok := ctx.Deadline(); ok {
		if !dl.bodyDone {
			dl.rc.SetReadDeadline(d)
			r.Body = &deadlineBody{ReadCloser: r.Body, dl: dl}
		}
		dl.rc.SetWriteDeadline(d.Add(replyGrace))
	} else if !dl.bodyDone {
		r.Body = &deadlineBody{ReadCloser: r.Body, dl: dl}
	}
	stopDL := context.AfterFunc(ctx, dl.expire)
	defer func() {
		stopDL()
		dl.finish()
	}()
	r = r.WithContext(ctx)

	if err := h(rw, r); err != nil {
		s.writeError(rw, r, fl, err)
	}
}

// bearerToken returns the token a request carries: the header
// "Authorization: Bearer TOKEN", or, on a WebSocket handshake without an
// Authorization header, the first subprotocol offered that is
// wire.BearerSubprotocol(TOKEN) (browsers cannot set headers on a
// WebSocket). Spaces around the token are ignored.
func bearerToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		return strings.TrimSpace(tok), true
	}
	if !isWebSocket(r) {
		return "", false
	}
	for _, p := range subprotocols(r) {
		if tok, ok := wire.TokenFromSubprotocol(p); ok {
			return strings.TrimSpace(tok), true
		}
	}
	return "", false
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

// subprotocols lists the WebSocket subprotocols a handshake offers.
func subprotocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// headerHas reports whether the comma-separated header key lists token,
// in any case.
func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// deadlines cuts a request's blocked body reads and writes when its
// context ends, and never touches the connection once the handler has
// returned (it may serve the next request by then).
//
// A read deadline is only ever set while the body is being read: once it
// is read (or when there is none), net/http reads the connection in the
// background to notice a client going away, and a read deadline firing
// there would cancel every later request on the connection.
type deadlines struct {
	rc       *http.ResponseController
	mu       sync.Mutex
	finished bool
	bodyDone bool
}

// replyGrace is how long past a request's end its reply may still be
// written.
const replyGrace = 5 * time.Second

func (d *deadlines) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished {
		return
	}
	if !d.bodyDone {
		d.rc.SetReadDeadline(time.Now())
	}
	// A moment to write the reply that says what happened: for an exec
	// stream, after its command has been killed and has exited, which a
	// loaded machine can take more than a second to do (CI: the stream
	// of TestRequestTimeout was cut, "unexpected EOF", before its error
	// event). The same 5 s as past the deadline above.
	d.rc.SetWriteDeadline(time.Now().Add(replyGrace))
}

// bodyRead is called when the body has been read to its end (or failed).
func (d *deadlines) bodyRead() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bodyDone && !d.finished {
		d.rc.SetReadDeadline(time.Time{})
	}
	d.bodyDone = true
}

func (d *deadlines) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finished = true
	// The read deadline stays: the server discards an unread body under
	// it, then sets its own for the next request.
	d.rc.SetWriteDeadline(time.Time{})
}

// deadlineBody tells deadlines when the body is over.
type deadlineBody struct {
	io.ReadCloser
	dl *deadlines
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.dl.bodyRead()
	}
	return n, err
}

// respWriter records the status and size for the access log, and whether
// the header went out (after which an error can no longer be a reply).
type respWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *respWriter) WriteHeader(code int) {
	// 101 Switching Protocols (a WebSocket) is the final reply too.
	if !w.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
