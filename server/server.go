// Package server exposes a compute provider over HTTP: the Go form of the
// seed's handleComputeRequest, made fit to face a network.
//
//	p, _ := local.New(local.Options{})
//	srv := server.New(p, server.Options{Token: os.Getenv("COMPUTE_TOKEN")})
//	defer srv.Close() // destroys every sandbox the server created
//	hs := srv.HTTPServer() // with limits on unauthenticated connections
//	hs.Addr = "127.0.0.1:8080"
//	hs.ListenAndServe()
//
// A *Server is an http.Handler. It answers:
//
//   - POST /api/compute: the seed's JSON protocol, exactly: {"action":
//     "compute.sandbox.create" | "...list" | "...destroy" | "...getInfo" |
//     "...runCode" | "...runCommand" | "...filesystem.readFile" |
//     "...writeFile" | "...mkdir" | "...readdir" | "...exists" | "...remove",
//     ...} answered with {success, error, sandboxId, provider, ...}. A web
//     app written for the TypeScript handler works against it unchanged.
//     One addition: "encoding": "base64" on readFile and writeFile moves
//     any bytes; a file that is not UTF-8 is returned in base64 with
//     "encoding": "base64" in the response, never mangled.
//   - /api/compute/v1/...: extensions for what the seed protocol cannot
//     say: streaming exec (NDJSON), stdin, kill, raw file upload and
//     download streamed both ways, stat and directory calls. Package remote
//     is a compute.Provider built on them.
//   - GET /api/compute/openapi.json: the OpenAPI 3 document of all of it.
//
// Streaming: POST /api/compute/v1/sandboxes/{id}/exec answers
// application/x-ndjson, one JSON Event per line, flushed as output is
// produced: {"type":"start","pid":N}, then {"type":"stdout"|"stderr",
// "data":BASE64} chunks, then {"type":"exit","exitCode":N} (or
// {"type":"error",...}). Closing the response kills the process.
//
// Status codes: 200 (201, 204) on success; 400 bad JSON (or a body that
// is not UTF-8), a missing field or an unknown action (with the seed's
// messages); 401 no or bad token; 403 network access the server does not
// give, or a request to a server without a token from outside its
// machine; 404 an unknown sandbox (another tenant's too), process or
// file; 405 a wrong method; 409 a file in the way; 410 a sandbox that
// stopped; 413 a body, reply or upload over the limits, or a command line
// and environment larger than the kernel takes; 422 a command or runtime
// that cannot run (syntax error, command not found); 429 too many live
// sandboxes; 5xx a failure of the provider or the server, always with a
// message, never a stack.
//
// Safety: bearer-token auth (compared in constant time), with tenants
// (Options.Tokens) that each see only their own sandboxes; without a
// token, only this machine is served and no sandbox gets network access
// (it could call the server as this machine). Body and reply size limits
// (replies are streamed: a request holds the raw output it returns, never
// its JSON form), a timeout on every request, an exact cap on live
// sandboxes, sandboxes reaped when idle, limits on connections that have
// not authenticated (HTTPServer), and Shutdown, which finishes or cancels
// the requests in flight and destroys every sandbox the server created.
// A server only sees the sandboxes it created: other sandboxes of the
// same provider are not reachable through it. Access logs go to
// Options.Logger (log/slog).
package server

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/computesdk-go/compute"
)

// Defaults for Options' zero values.
const (
	DefaultMaxSandboxes   = 100
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultRequestTimeout = 10 * time.Minute
	DefaultMaxBodyBytes   = 32 << 20
	DefaultMaxOutputBytes = compute.DefaultMaxOutput
	DefaultMaxFileBytes   = 1 << 30
)

// Options configures a Server. The zero value is safe for a server on
// loopback: no token, the Default limits.
type Options struct {
	// Token, when set, is required from every client as the header
	// "Authorization: Bearer <Token>" (compared in constant time, spaces
	// around it ignored). Only the OpenAPI document and the health check
	// are served without it. It is an admin token: it sees every sandbox
	// (see Tokens).
	//
	// A server with neither Token nor Tokens has no authentication, and so
	// serves only this machine: requests from a loopback address, for a
	// loopback host name, not from a web page of another site (403
	// otherwise; see AllowUnauthenticatedRemote), and it gives no sandbox
	// network access, since a sandbox with network could call it as this
	// machine.
	Token string
	// Tokens gives clients tokens of their own: it maps each token to a
	// tenant name (ParseTokens reads them from a file). A tenant sees,
	// lists, uses and destroys only the sandboxes it created; another
	// tenant's sandbox answers as one that does not exist (404), so ids
	// do not leak. The tenant named AdminTenant ("admin") sees every
	// sandbox. New panics on an empty token or tenant name.
	Tokens map[string]string
	// AllowUnauthenticatedRemote lets a server without a token answer
	// requests that do not come from this machine. Set it only when the
	// server sits behind authentication of your own (a proxy that checks
	// who calls); sandboxes still get no network without a token.
	AllowUnauthenticatedRemote bool
	// MaxSandboxes caps the sandboxes alive at once; creating one more is
	// refused with 429. Zero means DefaultMaxSandboxes.
	MaxSandboxes int
	// IdleTimeout destroys a sandbox that no request has used for this
	// long (a running exec stream counts as use; a background process
	// without one does not). Zero means DefaultIdleTimeout; negative,
	// never.
	IdleTimeout time.Duration
	// RequestTimeout bounds every request, exec streams included: a
	// command still running then is killed. Zero means
	// DefaultRequestTimeout; negative, no limit.
	RequestTimeout time.Duration
	// MaxBodyBytes caps a JSON request body (413 past it). Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxOutputBytes caps what a JSON reply holds, counted as sent (JSON
	// escapes a control character in 6 bytes, base64 takes 4 for 3):
	// each of stdout and stderr of the seed's runCommand and runCode (the
	// output is kept up to this many bytes as it arrives, the rest
	// dropped, and the reply holds what fits, with "truncated": true when
	// anything was left out, as compute's RunOptions.MaxOutput and
	// Result.Truncated); the file of readFile and a directory listing
	// (413 past it; the raw download endpoint has no limit). So a request
	// holds at most 2×MaxOutputBytes of output, and no JSON reply is
	// larger than 2×MaxOutputBytes + 64 KiB, but a list of sandboxes,
	// which grows with MaxSandboxes. Zero means DefaultMaxOutputBytes.
	MaxOutputBytes int
	// MaxFileBytes caps one raw upload (413 past it; the old content is
	// kept). Zero means DefaultMaxFileBytes.
	MaxFileBytes int64
	// AllowNetwork lets clients create sandboxes with network access
	// ("network": "host", or an allowlist in "networkAllow"). Without it
	// every sandbox is created with compute.NetworkNone and asking for
	// more is refused with 403.
	AllowNetwork bool
	// MaxPreAuthConnsPerClient caps the connections one client address
	// (an IPv4 address, an IPv6 /64) holds open without having sent an
	// authorized request; past it the oldest of them is closed. It and
	// the next two take effect through HTTPServer. Zero means
	// DefaultMaxPreAuthConnsPerClient; negative, no cap.
	MaxPreAuthConnsPerClient int
	// MaxPreAuthConns is the same cap for all clients together. Zero
	// means DefaultMaxPreAuthConns; negative, no cap.
	MaxPreAuthConns int
	// PreAuthTimeout closes a connection that has not sent an authorized
	// request this long after it opened. Zero means
	// DefaultPreAuthTimeout; negative, never.
	PreAuthTimeout time.Duration
	// Logger receives one access-log record per request (Info; Warn for
	// 5xx; Debug for a healthy health check) and the server's own events.
	// Nil logs only warnings and errors, to slog.Default(): a library's
	// server does not write a line per request unless asked to.
	Logger *slog.Logger
}

// shutdownGrace bounds the waits of Shutdown that follow cancellation:
// handlers returning, and each sandbox's Destroy.
const shutdownGrace = 30 * time.Second

// Server serves a provider over HTTP. Create it with New (or Handler); it
// is an http.Handler. Shutdown (or Close) it to destroy the sandboxes it
// created.
type Server struct {
	opts     Options
	c        *compute.Compute
	provider string
	log      *slog.Logger
	mux      *http.ServeMux
	tokens   []tokenEntry
	conns    *connGuard

	// base is cancelled when Shutdown gives up waiting: every request's
	// context and every background process hang off it.
	base       context.Context
	cancelBase context.CancelFunc

	mu        sync.Mutex
	sandboxes map[string]*entry
	pending   int    // creates in progress, counted against MaxSandboxes
	seq       uint64 // the last entry.seq handed out
	closing   bool   // Shutdown has begun: new requests get 503
	final     bool   // sandboxes were destroyed: a late create destroys its own
	procs     map[int64]*proc
	nextPID   int64

	requests   tracker // requests in flight
	background tracker // goroutines the server owns (reaper, waiters)

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error
}

// New returns a Server for provider p (wrapped in compute.New, so every
// provider gets compute's runtime detection and filesystem fallback).
// It starts a goroutine that reaps idle and ended sandboxes; Shutdown or
// Close stops it. Serve it with HTTPServer, which limits what clients
// that have not authenticated may hold.
func New(p compute.Provider, opts Options) *Server {
	if opts.MaxSandboxes <= 0 {
		opts.MaxSandboxes = DefaultMaxSandboxes
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxOutputBytes <= 0 {
		opts.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(warnings{slog.Default().Handler()})
	}
	s := &Server{
		opts:         opts,
		c:            compute.New(compute.Config{Provider: p, NoFallback: true}),
		log:          opts.Logger,
		sandboxes:    map[string]*entry{},
		procs:        map[int64]*proc{},
		shutdownDone: make(chan struct{}),
	}
	if p != nil {
		s.provider = p.Name()
	}
	opts.Token = strings.TrimSpace(opts.Token)
	s.opts.Token = opts.Token
	s.tokens = tokenTable(&s.opts)
	s.conns = newConnGuard(&s.opts)
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.routes()
	s.background.add()
	go s.reap()
	return s
}

// Handler is New under the seed's name (handleComputeRequest({request,
// provider})): the returned *Server answers the seed's protocol at
// POST /api/compute, with the v1 extensions beside it. It returns the
// *Server rather than a bare http.Handler so that it can be shut down.
func Handler(p compute.Provider, opts Options) *Server { return New(p, opts) }

// SeedHandler answers the seed's JSON protocol at whatever path it is
// mounted on (like the TypeScript handler in a framework route), with the
// server's sandboxes, auth and limits:
//
//	mux.Handle("/my/compute", srv.SeedHandler())
func (s *Server) SeedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, flavorSeed, s.handleSeed)
	})
}

// Stats is a snapshot of what a Server holds.
type Stats struct {
	// Sandboxes is how many sandboxes the server created and still holds.
	Sandboxes int
	// Processes is how many processes it is running (streams and the
	// seed's background commands).
	Processes int
	// Requests is how many requests are in flight.
	Requests int
	// PreAuthConns is how many connections served through HTTPServer
	// have not sent an authorized request yet.
	PreAuthConns int
}

// Stats returns what the server holds now.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Sandboxes: len(s.sandboxes), Processes: len(s.procs)}
	s.mu.Unlock()
	st.Requests = s.requests.count()
	st.PreAuthConns = s.conns.preAuth()
	return st
}

// flavor is the shape of a request's error replies.
type flavor int

const (
	flavorV1   flavor = iota // ErrorResponse
	flavorSeed               // the seed's {success, error, sandboxId, provider}
)

// ServeHTTP answers the seed protocol, the v1 endpoints and the OpenAPI
// document.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case SeedPath, SeedPath + "/":
		s.serve(w, r, flavorSeed, s.handleSeed)
	case OpenAPIPath:
		s.servePublic(w, r, s.handleOpenAPI)
	case HealthPath:
		s.servePublic(w, r, s.handleHealth)
	default:
		s.serve(w, r, flavorV1, s.route)
	}
}

// route dispatches to the v1 mux, answering unknown paths and methods with
// JSON errors rather than the mux's plain text.
func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			return errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))
		}
		return errorf(http.StatusNotFound, CodeNotFound, "no endpoint %s %s; see GET %s", r.Method, r.URL.Path, OpenAPIPath)
	}
	s.mux.ServeHTTP(w, r) // sets the path's {values}, which Handler does not
	return nil
}

// statusProbe records what the mux's own 404/405 handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }

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
				s.writeError(rw, r, fl, errorf(http.StatusInternalServerError, CodeInternal, "internal server error (logged by the server)"))
			} else {
				panic(http.ErrAbortHandler) // cut the response short rather than end it cleanly
			}
		}
	}()

	if !s.authenticated() && !s.opts.AllowUnauthenticatedRemote {
		if why := notLocal(r); why != "" {
			s.writeError(rw, r, fl, errorf(http.StatusForbidden, CodeForbidden,
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
	// writes are cut at the same moment.
	var cancel context.CancelFunc
	if s.opts.RequestTimeout > 0 {
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
		dl.rc.SetWriteDeadline(d.Add(5 * time.Second))
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

func (d *deadlines) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.finished {
		return
	}
	if !d.bodyDone {
		d.rc.SetReadDeadline(time.Now())
	}
	// A moment to write the reply that says what happened.
	d.rc.SetWriteDeadline(time.Now().Add(time.Second))
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
	if !w.wroteHeader && code >= 200 {
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

// reqInfo is what handlers add to a request's access-log record.
type reqInfo struct {
	mu      sync.Mutex
	action  string
	sandbox string
	errMsg  string
}

type reqInfoKey struct{}

func annotate(r *http.Request, action, sandbox string) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.mu.Lock()
		if action != "" {
			info.action = action
		}
		if sandbox != "" {
			info.sandbox = sandbox
		}
		info.mu.Unlock()
	}
}

func (s *Server) accessLog(r *http.Request, rw *respWriter, info *reqInfo, start time.Time) {
	level := slog.LevelInfo
	switch {
	case rw.status >= 500:
		level = slog.LevelWarn
	case r.URL.Path == HealthPath && rw.status == http.StatusOK:
		level = slog.LevelDebug // probes every few seconds are noise
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rw.status),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
	}
	info.mu.Lock()
	if info.action != "" {
		attrs = append(attrs, slog.String("action", info.action))
	}
	if info.sandbox != "" {
		attrs = append(attrs, slog.String("sandbox", info.sandbox))
	}
	if info.errMsg != "" {
		attrs = append(attrs, slog.String("error", info.errMsg))
	}
	info.mu.Unlock()
	s.log.LogAttrs(context.WithoutCancel(r.Context()), level, "request", attrs...)
}

// tracker counts running things and tells when none are left.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   []chan struct{}
}

// add counts one more, unless closed.
func (t *tracker) add() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		for _, ch := range t.zero {
			close(ch)
		}
		t.zero = nil
	}
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// idle returns a channel closed when the count is zero; with seal set,
// add refuses from now on.
func (t *tracker) idle(seal bool) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seal {
		t.closed = true
	}
	ch := make(chan struct{})
	if t.n == 0 {
		close(ch)
	} else {
		t.zero = append(t.zero, ch)
	}
	return ch
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops the server gracefully: new requests get 503, the
// requests in flight may finish until ctx is done, then they are
// cancelled (their processes killed); last, every sandbox the server
// created is destroyed, also when ctx is already done (each Destroy has
// its own 30 s bound). It returns an error when requests had to be
// cancelled or a sandbox failed to be destroyed. Later calls wait for the
// first and return its result. Stop the http.Server (its Shutdown) too:
// this Server does not own the listener.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.shutdownErr = s.shutdown(ctx)
		close(s.shutdownDone)
	})
	<-s.shutdownDone
	return s.shutdownErr
}

// Close is Shutdown without the grace: requests in flight are cancelled at
// once, then every sandbox the server created is destroyed.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		// Cancelling is what Close is for.
		err = errors.Join(unwrapJoined(err, context.Canceled)...)
	}
	return err
}

// unwrapJoined returns the errors joined in err, without those matching
// drop.
func unwrapJoined(err error, drop error) []error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.Is(e, drop) {
				out = append(out, e)
			}
		}
		return out
	}
	if !errors.Is(err, drop) {
		out = append(out, err)
	}
	return out
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	var errs []error

	drained := s.requests.idle(true)
	select {
	case <-drained:
	default:
		select {
		case <-drained:
		case <-ctx.Done():
			n := s.requests.count()
			errs = append(errs, fmt.Errorf("server: cancelled %d requests still in flight: %w", n, ctx.Err()))
			s.log.Warn("server: shutdown: cancelling requests in flight", "requests", n)
			s.cancelBase()
			select {
			case <-drained:
			case <-time.After(shutdownGrace):
				s.log.Error("server: shutdown: requests still running after cancellation", "requests", s.requests.count())
			}
		}
	}
	s.cancelBase()

	s.mu.Lock()
	s.final = true
	list := make([]*entry, 0, len(s.sandboxes))
	for _, e := range s.sandboxes {
		list = append(list, e)
	}
	s.sandboxes = map[string]*entry{}
	s.mu.Unlock()
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(16)
	for _, e := range list {
		g.Go(func() error {
			if err := s.destroy(e.sb.ID()); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	if len(list) > 0 {
		s.log.Info("server: shutdown: destroyed sandboxes", "sandboxes", len(list))
	}

	select {
	case <-s.background.idle(false):
	case <-time.After(shutdownGrace):
		s.log.Error("server: shutdown: background work still running", "goroutines", s.background.count())
	}
	return errors.Join(errs...)
}

// destroy destroys a sandbox with a context of its own, so that it
// happens also after the request or the shutdown context ended. A sandbox
// the provider does not know is destroyed already.
func (s *Server) destroy(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.c.Destroy(ctx, id); err != nil && !errors.Is(err, compute.ErrNotFound) {
		s.log.Error("server: destroy sandbox", "sandbox", id, "error", err)
		return fmt.Errorf("server: destroy sandbox %s: %w", id, err)
	}
	return nil
}

//go:embed openapi.json
var openAPI []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method %s is not allowed on %s (allowed: GET)", r.Method, r.URL.Path)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPI) // a failed write means the client is gone
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	if s.isClosing() {
		w.Header().Set("Connection", "close")
		return errShuttingDown
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// warnings passes on a handler's records of level Warn and above only.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnings{w.Handler.WithAttrs(attrs)}
}

func (w warnings) WithGroup(name string) slog.Handler { return warnings{w.Handler.WithGroup(name)} }
