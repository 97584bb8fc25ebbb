// Package server exposes a compute provider over HTTP: the Go form of the
// TypeScript ComputeSDK's handleComputeRequest, made fit to face a network.
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
//   - POST /api/compute: the ComputeSDK request protocol, exactly: {"action":
//     "compute.sandbox.create" | "...list" | "...destroy" | "...getInfo" |
//     "...runCode" | "...runCommand" | "...filesystem.readFile" |
//     "...writeFile" | "...mkdir" | "...readdir" | "...exists" | "...remove",
//     ...} answered with {success, error, sandboxId, provider, ...}. A web
//     app written for the TypeScript handler works against it unchanged.
//     One addition: "encoding": "base64" on readFile and writeFile moves
//     any bytes; a file that is not UTF-8 is returned in base64 with
//     "encoding": "base64" in the response, never mangled.
//   - /api/compute/v1/...: extensions for what the request protocol cannot
//     say: streaming exec (NDJSON), stdin, kill, raw file upload and
//     download streamed both ways, stat and directory calls, code contexts
//     (stateful interpreters, cells streamed as NDJSON), and terminals
//     (GET .../sandboxes/{id}/terminal, a WebSocket). Package remote is a
//     driver.Provider built on them.
//   - /mcp (MCPPath): the Model Context Protocol over streamable HTTP,
//     package mcp's tools for AI agents, behind the same token.
//   - GET /api/compute/openapi.json: the OpenAPI 3 document of all of it.
//   - GET / and /console/...: the web console (package console), a page
//     that uses the API above as any client does. It holds no secrets and
//     is served without a token (the page asks for the token and sends it
//     as a bearer header); a server without a token serves it only to
//     this machine, like everything else.
//
// Streaming: POST /api/compute/v1/sandboxes/{id}/exec answers
// application/x-ndjson, one JSON Event per line, flushed as output is
// produced: {"type":"start","pid":N}, then {"type":"stdout"|"stderr",
// "data":BASE64} chunks, then {"type":"exit","exitCode":N} (or
// {"type":"error",...}). Closing the response kills the process.
//
// Status codes: 200 (201, 204) on success; 400 bad JSON (or a body that
// is not UTF-8), a missing field or an unknown action (with the
// TypeScript handler's messages); 401 no or bad token; 403 network access the server does not
// give, or a request to a server without a token from outside its
// machine; 404 an unknown sandbox (another tenant's too), process or
// file; 405 a wrong method; 409 a file in the way; 410 a sandbox that
// stopped; 413 a body, reply or upload over the limits, or a command line
// and environment larger than the kernel takes; 422 a command or runtime
// that cannot run (syntax error, command not found); 429 too many live
// sandboxes; 5xx a failure of the provider or the server, always with a
// message, never a stack. Package wire holds the paths, the v1 JSON shapes
// and the error codes, with their statuses and the errors they stand for.
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
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/console"
	"github.com/computesdk-go/compute/server/wire"
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
	// command still running then is killed. Terminals are the exception:
	// for them it is how long a terminal may go with neither input nor
	// output before it is closed, so one in use is never cut. Zero means
	// DefaultRequestTimeout; negative, no limit.
	RequestTimeout time.Duration
	// MaxBodyBytes caps a JSON request body (413 past it). Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxOutputBytes caps what a JSON reply holds, counted as sent (JSON
	// escapes a control character in 6 bytes, base64 takes 4 for 3):
	// each of stdout and stderr of the protocol's runCommand and runCode (the
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
	// AllowImages lets clients choose a sandbox's image ("image" in a
	// create, create_sandbox's image over MCP). Fetching an image is done
	// by the provider, on its side: the local provider pulls registry
	// references with this machine's network, disk and registry
	// credentials (the Docker config's), so a client could read every
	// private image those credentials reach, fill the image cache, or make
	// this machine contact any host. Without it a create naming an image
	// is refused with 403 and sandboxes run the provider's default.
	AllowImages bool
	// AllowLocalImages also lets clients name images among this machine's
	// files ("oci:DIR[:TAG]", "docker-archive:FILE"), which the server
	// then reads with its own permissions: any layout or archive it can
	// read becomes a client's sandbox. It needs AllowImages and a token
	// (without one, every local user could read the server user's files
	// this way); otherwise such images are refused with 403.
	AllowLocalImages bool
	// ImageRegistries, when not empty, are the registry hosts (with
	// their ports, if any: "ghcr.io", "docker.io", "localhost:5000")
	// clients' images may come from: a create naming an image of any
	// other is refused with 403 before anything is pulled. Empty allows
	// every registry (under AllowImages). An embedder that hands the
	// provider its own imagestore.PullOptions can enforce the same there
	// with imagestore.AllowRegistries.
	ImageRegistries []string
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

// Server serves a provider over HTTP. Create it with New; it
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

	mcp mcpEndpoint // MCPPath (mcp.go)
}

// New returns a Server for provider p (wrapped in compute.New, so every
// provider gets compute's runtime detection and filesystem fallback).
// It starts a goroutine that reaps idle and ended sandboxes; Shutdown or
// Close stops it. Serve it with HTTPServer, which limits what clients
// that have not authenticated may hold.
func New(p driver.Provider, opts Options) *Server {
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
	s.initMCP()
	s.background.add()
	go s.reap()
	return s
}

// ProtocolHandler answers the ComputeSDK request protocol (the JSON
// protocol of the TypeScript handleComputeRequest) at whatever path it is
// mounted on, like the TypeScript handler in a framework route, with the
// server's sandboxes, auth and limits:
//
//	mux.Handle("/my/compute", srv.ProtocolHandler())
func (s *Server) ProtocolHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, flavorSeed, s.handleSeed)
	})
}

// Stats is a snapshot of what a Server holds.
type Stats struct {
	// Sandboxes is how many sandboxes the server created and still holds.
	Sandboxes int
	// Processes is how many processes it is running (streams and the
	// request protocol's background commands).
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

// ServeHTTP answers the ComputeSDK request protocol, the v1 endpoints, the OpenAPI
// document and the web console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wire.ProtocolPath, wire.ProtocolPath + "/":
		s.serve(w, r, flavorSeed, s.handleSeed)
	case wire.OpenAPIPath:
		s.servePublic(w, r, s.handleOpenAPI)
	case wire.HealthPath:
		s.servePublic(w, r, s.handleHealth)
	case MCPPath:
		s.serve(w, r, flavorV1, s.handleMCP)
	case "/":
		s.servePublic(w, r, s.handleConsole)
	default:
		if strings.HasPrefix(r.URL.Path, console.Prefix) {
			s.servePublic(w, r, s.handleConsole)
			return
		}
		s.serve(w, r, flavorV1, s.route)
	}
}

// handleConsole serves the web console's page and assets, without a token
// but, on a server without one, only to this machine (loopback peer and
// host name, no page of another site behind it).
func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request) error {
	if !s.authenticated() && !s.opts.AllowUnauthenticatedRemote {
		if why := notLocal(r); why != "" {
			return errorf(wire.CodeForbidden, "this server has no token, so it serves its console only to this machine: refused %s; its operator must set a token (compute serve --token or $COMPUTE_TOKEN)", why)
		}
	}
	consoleHandler.ServeHTTP(w, r)
	return nil
}

var consoleHandler = console.Handler()

// route dispatches to the v1 mux, answering unknown paths and methods with
// JSON errors rather than the mux's plain text.
func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			return errorf(wire.CodeMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))
		}
		return errorf(wire.CodeNotFound, "no endpoint %s %s; see GET %s", r.Method, r.URL.Path, wire.OpenAPIPath)
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
