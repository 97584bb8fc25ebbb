// Package mcp serves sandboxes to AI agents over the Model Context
// Protocol: tools that run code and commands and move files in sandboxes
// of any provider, on the official Go SDK
// (github.com/modelcontextprotocol/go-sdk).
//
//	p, _ := local.New(local.Options{})
//	defer p.Close()
//	srv := mcp.NewServer(compute.New(compute.Config{Provider: p}), nil)
//	defer srv.Close() // destroys every sandbox of every session
//	srv.ServeStdio(ctx, os.Stdin, os.Stdout)  // or: http.Handle("/mcp", srv.Handler())
//
// The tools: run_code (Python or JavaScript in a persistent interpreter,
// charts as images), run_command (a shell command), write_file,
// read_file, list_files, create_sandbox, destroy_sandbox and
// list_sandboxes. A call without sandbox_id uses the session's default
// sandbox, created on first use, with one persistent interpreter per
// language, so an agent's variables survive from one run_code to the next.
//
// Every MCP session owns the sandboxes it created: no other session can
// name them, and they are destroyed when the session ends (end of input
// on stdio, the client's DELETE or SessionTimeout over HTTP) and by Close.
// Text given back to the model is capped (Options.MaxOutput) with a note
// saying what was cut. Failures (bad arguments, a missing file, an unknown
// sandbox, code that raised) are tool results with isError set and a
// message the model can act on, never protocol errors or crashes.
package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/computesdk-go/compute"
)

// Defaults for Options' zero values.
const (
	// DefaultMaxOutput is how many characters of text one tool call gives
	// back to the model, all of its parts together.
	DefaultMaxOutput = 20000
	// DefaultLifetime is the lifetime of a sandbox created for a session
	// when neither Options.Create nor the call says.
	DefaultLifetime = time.Hour
	// DefaultRunTimeout bounds a run_code cell, and a run_command that
	// names no timeout_seconds.
	DefaultRunTimeout = 5 * time.Minute
	// DefaultSessionTimeout ends an HTTP session (and destroys its
	// sandboxes) that sent no request for this long.
	DefaultSessionTimeout = 30 * time.Minute
)

// destroyTimeout bounds the destruction of one sandbox at a session's end.
const destroyTimeout = 30 * time.Second

// Sandboxes is where a Server gets its sessions' sandboxes from and gives
// them back to. The default is the Compute given to NewServer; a front end
// that accounts for sandboxes (a server with limits and tenants) brings its
// own.
type Sandboxes interface {
	// Create creates a sandbox with opts; opts.Image is Options.Create's
	// image or the one create_sandbox names. An error's message is what
	// the model sees.
	Create(ctx context.Context, opts *compute.CreateOptions) (*compute.Sandbox, error)
	// Destroy destroys a sandbox Create returned. A sandbox that is
	// already gone is no error.
	Destroy(ctx context.Context, sb *compute.Sandbox) error
}

// Options configures a Server. The zero value (or nil) is valid.
type Options struct {
	// MaxOutput caps the text one tool call gives back to the model, in
	// characters (stdout, stderr, results and files together); what is
	// cut from the middle is replaced by a note. Zero means
	// DefaultMaxOutput; negative, no cap.
	MaxOutput int
	// Create is what every sandbox is created with (Network, Timeout,
	// Env, ...); nil means the provider's defaults, with a lifetime of
	// DefaultLifetime. create_sandbox's arguments override Timeout and
	// Network.
	Create *compute.CreateOptions
	// AllowNetwork lets the model ask for a sandbox with network access
	// (create_sandbox's network: true). Without it, that is refused; the
	// default sandbox's network is Create's either way.
	AllowNetwork bool
	// AllowImages lets the model name a sandbox's image (create_sandbox's
	// image), a registry reference the provider fetches: on local, with
	// this machine's network, disk and registry credentials, so a model
	// could also make this machine contact any host it names. Without it,
	// create_sandbox takes no image but Create's. Images among this
	// machine's files ("oci:", "docker-archive:") are never the model's to
	// name; Create.Image may be one.
	AllowImages bool
	// RunTimeout bounds every run_code cell (the cell is interrupted and
	// its interpreter keeps its state) and every run_command without
	// timeout_seconds. Zero means DefaultRunTimeout; negative, no limit
	// but the sandbox's lifetime.
	RunTimeout time.Duration
	// SessionTimeout ends an HTTP session that sent no request for this
	// long, destroying its sandboxes. Zero means DefaultSessionTimeout;
	// negative, never. Sessions over Run and ServeStdio end with their
	// transport.
	SessionTimeout time.Duration
	// Sandboxes, when set, creates and destroys the sessions' sandboxes
	// in place of the Compute given to NewServer.
	Sandboxes Sandboxes
	// Logger receives the server's events (sessions opened and closed,
	// sandboxes destroyed, failures). Nil means slog.Default() for
	// warnings and errors only. Over stdio, it must not write to standard
	// output.
	Logger *slog.Logger
}

// Server is an MCP server whose tools use sandboxes. Create it with
// NewServer; serve it with Handler (streamable HTTP), ServeStdio or Run,
// as many sessions at once as clients connect. Close it to end every
// session and destroy their sandboxes.
type Server struct {
	opts Options
	sbx  Sandboxes
	log  *slog.Logger
	srv  *sdk.Server
	http *sdk.StreamableHTTPHandler

	// base is cancelled by Close: every tool call's context ends with it.
	base   context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	sessions map[*sdk.ServerSession]*session
	wg       sync.WaitGroup // the sessions' watchers
}

// NewServer returns a Server whose sandboxes come from c (or from
// opts.Sandboxes, when set: then c may be nil). opts may be nil.
func NewServer(c *compute.Compute, opts *Options) *Server {
	s := &Server{sessions: map[*sdk.ServerSession]*session{}}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.MaxOutput == 0 {
		s.opts.MaxOutput = DefaultMaxOutput
	}
	if s.opts.RunTimeout == 0 {
		s.opts.RunTimeout = DefaultRunTimeout
	}
	if s.opts.SessionTimeout == 0 {
		s.opts.SessionTimeout = DefaultSessionTimeout
	}
	create := compute.CreateOptions{}
	if s.opts.Create != nil {
		create = *s.opts.Create
	}
	if create.Timeout == 0 {
		create.Timeout = DefaultLifetime
	}
	s.opts.Create = &create
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(warnings{slog.Default().Handler()})
	}
	s.sbx = s.opts.Sandboxes
	if s.sbx == nil {
		if c == nil {
			panic("mcp: NewServer needs a Compute or Options.Sandboxes")
		}
		s.sbx = computeSandboxes{c}
	}
	s.base, s.cancel = context.WithCancel(context.Background())

	s.srv = sdk.NewServer(&sdk.Implementation{
		Name:    "compute",
		Title:   "Compute sandboxes",
		Version: version(),
	}, &sdk.ServerOptions{
		Instructions: instructions,
		Logger:       s.log,
		// Tools only: no logging capability (the SDK's default).
		Capabilities: &sdk.ServerCapabilities{},
		InitializedHandler: func(_ context.Context, req *sdk.InitializedRequest) {
			s.attach(req.Session)
		},
	})
	s.addTools()

	timeout := s.opts.SessionTimeout
	if timeout < 0 {
		timeout = 0
	}
	s.http = sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.srv }, &sdk.StreamableHTTPOptions{
		SessionTimeout: timeout,
		Logger:         s.log,
	})
	return s
}

// instructions tell the model how the tools fit together.
const instructions = `These tools run code and shell commands in isolated sandboxes (Linux machines of their own) and move files in and out of them.
Without sandbox_id, every tool uses this session's default sandbox, created on first use: files written there are seen by run_code and run_command, and run_code keeps one interpreter per language, so variables, imports and functions survive from one call to the next.
Use create_sandbox only when you need a second, separate machine (or one with different settings); every sandbox of this session is destroyed when the session ends.`

// Handler returns the server over MCP's streamable HTTP transport, one
// session per client (Mcp-Session-Id). A session ends when its client
// sends DELETE, or after SessionTimeout without a request; its sandboxes
// are destroyed then. GET (a stream for server-initiated messages) is
// answered 405, which the protocol allows: the server sends none.
//
// The handler has no authentication of its own: mount it behind it
// (package server does, with its bearer tokens). The SDK refuses a
// request that reaches a loopback address with another host name (DNS
// rebinding).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Allow", "POST, DELETE")
			http.Error(w, "this MCP server sends no messages of its own: no GET stream", http.StatusMethodNotAllowed)
			return
		}
		if s.isClosed() {
			http.Error(w, "the MCP server is shutting down", http.StatusServiceUnavailable)
			return
		}
		s.http.ServeHTTP(w, r)
	})
}

// Run serves one session over transport t until the client ends it or
// ctx is done, then destroys the session's sandboxes and returns.
func (s *Server) Run(ctx context.Context, t sdk.Transport) error {
	if s.isClosed() {
		return errClosed
	}
	ss, err := s.srv.Connect(ctx, t, nil)
	if err != nil {
		return err
	}
	st := s.attach(ss)
	stop := context.AfterFunc(ctx, func() { ss.Close() })
	defer stop()
	err = ss.Wait()
	if st != nil {
		s.end(st)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, sdk.ErrConnectionClosed) {
		err = nil
	}
	return err
}

// ServeStdio serves one session over newline-delimited JSON-RPC on in and
// out (a process's standard input and output) until in ends or ctx is
// done, then destroys the session's sandboxes. Nothing else may write to
// out. When in is an io.ReadCloser, it is closed at the end.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	rc, ok := in.(io.ReadCloser)
	if !ok {
		rc = nopReadCloser{in}
	}
	return s.Run(ctx, &sdk.IOTransport{Reader: rc, Writer: nopWriteCloser{out}})
}

// Close ends every session: tool calls in flight are cancelled, and every
// sandbox the server created is destroyed. It waits for all of it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	list := make([]*session, 0, len(s.sessions))
	for _, st := range s.sessions {
		list = append(list, st)
	}
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, st := range list {
		st.ss.Close()
		if err := s.end(st); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

var errClosed = errors.New("mcp: the server is closed")

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// attach returns the state of session ss, making it (and the goroutine
// that cleans it up when ss ends) on first sight; nil once Close began,
// after closing ss.
func (s *Server) attach(ss *sdk.ServerSession) *session {
	s.mu.Lock()
	if st := s.sessions[ss]; st != nil {
		s.mu.Unlock()
		return st
	}
	if s.closed {
		s.mu.Unlock()
		ss.Close()
		return nil
	}
	st := newSession(s, ss)
	s.sessions[ss] = st
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.Info("mcp: session opened", "session", st.id)
	go func() {
		defer s.wg.Done()
		ss.Wait()
		s.end(st)
	}()
	return st
}

// end ends a session: no new sandboxes, and those it has are destroyed.
// It waits for the first call's cleanup, and returns its error.
func (s *Server) end(st *session) error {
	err := st.end()
	s.mu.Lock()
	if s.sessions[st.ss] == st {
		delete(s.sessions, st.ss)
	}
	s.mu.Unlock()
	return err
}

// callContext is a tool call's context, ended also by Close.
func (s *Server) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.base, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// computeSandboxes are the sandboxes of a Compute.
type computeSandboxes struct{ c *compute.Compute }

func (cs computeSandboxes) Create(ctx context.Context, opts *compute.CreateOptions) (*compute.Sandbox, error) {
	return cs.c.Create(ctx, opts)
}

func (computeSandboxes) Destroy(ctx context.Context, sb *compute.Sandbox) error {
	err := sb.Destroy(ctx)
	if errors.Is(err, compute.ErrNotFound) {
		return nil
	}
	return err
}

// warnings passes on records of level Warn and above.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

type nopReadCloser struct{ io.Reader }

func (nopReadCloser) Close() error { return nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// version is this module's version, as the build knows it.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == "github.com/computesdk-go/compute" && bi.Main.Version != "" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/computesdk-go/compute" {
				return d.Version
			}
		}
	}
	return "(devel)"
}
