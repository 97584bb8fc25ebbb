// Package remote is a compute provider that runs sandboxes on a compute
// server (package server, "compute serve") over HTTP:
//
//	c := compute.New(compute.Config{Provider: remote.New("http://127.0.0.1:8080", os.Getenv("COMPUTE_TOKEN"))})
//
// gives the same API as a local provider: commands with stdin, env and
// working directory, output streamed as it is produced (stdout and stderr
// apart), kill and timeouts that kill the remote process, background
// processes, a native filesystem with streamed uploads and downloads, and
// code contexts that the server keeps (driver.CodeContexter: every client
// of a sandbox sees them; a cell's output and results stream as produced),
// and terminals (driver.Terminaler: a program on a pseudo-terminal in the
// sandbox, carried over the server's WebSocket endpoint; see
// Sandbox.Terminal).
// Errors keep their kind: an unknown sandbox matches driver.ErrNotFound, a
// missing command driver.ErrCommandNotFound, a missing file
// fs.ErrNotExist, a bad token driver.ErrAuthentication (and so does the
// server's provider refusing its credentials; driver.ErrMissingCredentials
// when it has none), a full server driver.ErrQuotaExceeded; *Error has
// the HTTP details.
//
// It uses the server's v1 endpoints (package wire holds their shapes; the
// server package's openapi.json documents them). A command holds one HTTP
// request open while it runs, and a terminal one WebSocket: closing it,
// or losing the connection, kills the command (hangs up the terminal) on
// the server.
package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

// Options configures a Provider.
type Options struct {
	// URL is the server's base URL, such as "http://127.0.0.1:8080" (the
	// endpoints are under /api/compute). A path is kept as a prefix, for
	// a server mounted under one behind a proxy.
	URL string
	// Token is sent as "Authorization: Bearer <Token>" when set.
	Token string
	// HTTPClient makes the requests; nil means a client of the Provider's
	// own, with a pool of keep-alive connections. It must not have a
	// Timeout: commands hold their request open while they run (contexts
	// bound every call instead).
	HTTPClient *http.Client
	// Name is the provider's name in compute's router and in Info; empty
	// means "remote". Give each server its own name to route among several.
	Name string
	// KeepSandboxes makes Close leave the sandboxes created through the
	// Provider running (until they are destroyed, the server's idle
	// timeout or their own lifetime), for programs that hand their ids on,
	// as "compute sandbox create" does.
	KeepSandboxes bool
}

// Provider talks to one compute server. It is safe for concurrent use.
type Provider struct {
	base   string // URL without a trailing slash
	urlErr error
	token  string
	client *http.Client
	own    bool // client is ours: Close closes its connections
	name   string

	mu      sync.Mutex
	created map[string]bool // sandboxes created here and not destroyed here
	keep    bool            // Close leaves them running
}

var _ driver.Provider = (*Provider)(nil)

// New returns a provider for the server at url, authenticating with token
// (empty for a server without one). It does not contact the server: a bad
// URL or an unreachable server shows in the first call's error.
func New(url, token string) *Provider {
	return NewWithOptions(Options{URL: url, Token: token})
}

// NewWithOptions returns a provider configured by opts.
func NewWithOptions(opts Options) *Provider {
	p := &Provider{token: opts.Token, client: opts.HTTPClient, name: opts.Name, keep: opts.KeepSandboxes, created: map[string]bool{}}
	if p.name == "" {
		p.name = "remote"
	}
	if p.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Every running command holds a connection; keep plenty for reuse.
		t.MaxIdleConnsPerHost = 64
		p.client = &http.Client{Transport: t}
		p.own = true
	}
	u, err := url.Parse(opts.URL)
	switch {
	case err != nil:
		p.urlErr = fmt.Errorf("bad server URL %q: %w", opts.URL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		p.urlErr = fmt.Errorf("bad server URL %q: want http://HOST:PORT or https://HOST", opts.URL)
	default:
		p.base = strings.TrimSuffix(u.String(), "/")
	}
	return p
}

// Name returns the provider's name ("remote" unless Options.Name).
func (p *Provider) Name() string { return p.name }

// Close destroys the sandboxes created through this Provider that were not
// destroyed through it (unless Options.KeepSandboxes), and closes its idle
// connections. The server destroys its sandboxes itself when it shuts
// down.
func (p *Provider) Close() error {
	p.mu.Lock()
	ids := make([]string, 0, len(p.created))
	for id := range p.created {
		if !p.keep {
			ids = append(ids, id)
		}
	}
	p.mu.Unlock()
	var errs []error
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := p.Destroy(ctx, id); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if p.own {
		p.client.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Create creates a sandbox on the server.
func (p *Provider) Create(ctx context.Context, opts *driver.CreateOptions) (driver.Sandbox, error) {
	if opts == nil {
		opts = &driver.CreateOptions{}
	}
	req := wire.CreateRequest{
		Runtime: string(opts.Runtime), Timeout: millis(opts.Timeout), Env: opts.Env, Dir: opts.Dir,
		Name: opts.Name, Metadata: opts.Metadata, Network: string(opts.Network),
		NetworkAllow: opts.NetworkAllow, GPU: opts.GPU, Image: opts.Image, ImageSteps: opts.ImageSteps,
	}
	// The files COPY steps copy travel with the request.
	files, err := driver.ImageContextFiles(opts.ImageSteps, opts.ImageContext)
	if err != nil {
		return nil, fmt.Errorf("remote: create sandbox: %w", err)
	}
	for _, f := range files {
		req.ImageFiles = append(req.ImageFiles, wire.ImageFile{Path: f.Path, Mode: uint32(f.Mode.Perm()), Dir: f.Mode.IsDir(), Data: f.Data})
	}
	var info wire.SandboxInfo
	if err := p.call(ctx, http.MethodPost, "/sandboxes", nil, req, &info); err != nil {
		return nil, fmt.Errorf("remote: create sandbox: %w", err)
	}
	p.mu.Lock()
	p.created[info.ID] = true
	p.mu.Unlock()
	return &Sandbox{p: p, id: info.ID}, nil
}

// Get returns a live sandbox of the server by id.
func (p *Provider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	if id == "" {
		return nil, fmt.Errorf("remote: sandbox id is empty: %w", driver.ErrNotFound)
	}
	var info wire.SandboxInfo
	if err := p.call(ctx, http.MethodGet, sandboxPath(id), nil, nil, &info); err != nil {
		return nil, fmt.Errorf("remote: get sandbox %s: %w", id, err)
	}
	return &Sandbox{p: p, id: info.ID}, nil
}

// List returns the server's live sandboxes.
func (p *Provider) List(ctx context.Context) ([]driver.Sandbox, error) {
	var list wire.SandboxList
	if err := p.call(ctx, http.MethodGet, "/sandboxes", nil, nil, &list); err != nil {
		return nil, fmt.Errorf("remote: list sandboxes: %w", err)
	}
	out := make([]driver.Sandbox, len(list.Sandboxes))
	for i, info := range list.Sandboxes {
		out[i] = &Sandbox{p: p, id: info.ID}
	}
	return out, nil
}

// Destroy destroys a sandbox on the server; an unknown id is not an error.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := p.call(ctx, http.MethodDelete, sandboxPath(id), nil, nil, nil); err != nil {
		return fmt.Errorf("remote: destroy sandbox %s: %w", id, err)
	}
	p.mu.Lock()
	delete(p.created, id)
	p.mu.Unlock()
	return nil
}

// Sandbox is a sandbox on a compute server: what the compute package's
// Sandbox.Driver returns for this provider.
type Sandbox struct {
	p  *Provider
	id string
}

var (
	_ driver.Sandbox      = (*Sandbox)(nil)
	_ driver.FileSystemer = (*Sandbox)(nil)
)

// ID returns the sandbox's id on the server.
func (s *Sandbox) ID() string { return s.id }

// Info describes the sandbox as the server sees it now.
func (s *Sandbox) Info(ctx context.Context) (*driver.Info, error) {
	var info wire.SandboxInfo
	if err := s.p.call(ctx, http.MethodGet, sandboxPath(s.id), nil, nil, &info); err != nil {
		return nil, fmt.Errorf("remote: sandbox %s: %w", s.id, err)
	}
	return &driver.Info{
		ID: info.ID, Provider: s.p.name, Name: info.Name, Status: driver.Status(info.Status),
		Runtime: driver.Runtime(info.Runtime), CreatedAt: info.CreatedAt, Timeout: time.Duration(info.Timeout) * time.Millisecond,
		Metadata: info.Metadata, Limits: info.Limits,
	}, nil
}

func sandboxPath(id string) string { return "/sandboxes/" + url.PathEscape(id) }

// millis is d in milliseconds, rounded up so that a positive duration
// never reads as 0 ("the default").
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// request builds a request for a v1 endpoint.
func (p *Provider) request(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	if p.urlErr != nil {
		return nil, p.urlErr
	}
	u := p.base + wire.V1Path + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	req.Header.Set("User-Agent", "compute-remote/1")
	return req, nil
}

// do sends a request; a reply other than 2xx is turned into an error.
func (p *Provider) do(req *http.Request) (*http.Response, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, errorFrom(resp)
	}
	return resp, nil
}

// call sends a JSON request (in, when not nil) and decodes the JSON reply
// into out (when not nil).
func (p *Provider) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := p.request(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("reading the server's reply to %s %s: %w", method, path, err)
		}
	}
	io.Copy(io.Discard, resp.Body) // so that the connection is reused
	return nil
}

// Error is a reply of the server other than success. It matches (errors.Is)
// the compute or io/fs error of its kind.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the server's error code (wire.CodeSandboxNotFound, ...).
	Code string
	// Message is the server's message.
	Message string
	kind    error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the compute or io/fs error the reply stands for (see
// wire.Err), or nil.
func (e *Error) Unwrap() error { return e.kind }

// errorFrom reads an error reply.
func errorFrom(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er wire.ErrorResponse
	if json.Unmarshal(b, &er) != nil || er.Error == "" {
		er.Error = strings.TrimSpace(string(b))
		if er.Error == "" || !utf8Printable(er.Error) {
			er.Error = resp.Status
		}
	}
	return newError(resp.StatusCode, er)
}

// newError builds the Error for a reply (status 0: an error event of an
// exec stream).
func newError(status int, er wire.ErrorResponse) *Error {
	e := &Error{StatusCode: status, Code: er.Code, Message: er.Error}
	if er.Reason != "" {
		e.Message = er.Reason
	}
	e.kind = wire.Err(er.Code, status)
	return e
}

func utf8Printable(s string) bool {
	return len(s) < 1000 && !strings.ContainsAny(s, "\x00<")
}
