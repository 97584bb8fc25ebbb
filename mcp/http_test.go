package mcp_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/mcp"
	"github.com/computesdk-go/compute/server"
)

// bearer adds a token to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.base.RoundTrip(r)
}

// httpEnv is a compute server (package server) with /mcp.
type httpEnv struct {
	srv *server.Server
	ts  *httptest.Server
}

func newHTTPEnv(t *testing.T, opts server.Options) *httpEnv {
	t.Helper()
	p := newLocal(t)
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(p, opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		ts.Close()
	})
	return &httpEnv{srv: srv, ts: ts}
}

// connect opens an MCP session over HTTP with token.
func (e *httpEnv) connect(t *testing.T, token string) (*sdk.ClientSession, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	tr := &sdk.StreamableClientTransport{
		Endpoint:   e.ts.URL + server.MCPPath,
		HTTPClient: &http.Client{Transport: bearer{token, e.ts.Client().Transport}},
		MaxRetries: -1,
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, tr, nil)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

// post sends one raw JSON-RPC request to /mcp.
func (e *httpEnv) post(t *testing.T, token, session, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+server.MCPPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`

// waitSandboxes waits until the server holds n sandboxes.
func waitSandboxes(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for srv.Stats().Sandboxes != n {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d sandboxes after %v; want %d", srv.Stats().Sandboxes, hangGuard, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPWithToken(t *testing.T) {
	t.Parallel()
	const token = "a-long-test-token-0123456789"
	e := newHTTPEnv(t, server.Options{Token: token})

	for _, tok := range []string{"", "wrong-token"} {
		if resp := e.post(t, tok, "", initialize); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST /mcp with token %q: %s; want 401", tok, resp.Status)
		}
		if _, err := e.connect(t, tok); err == nil {
			t.Errorf("an MCP client with token %q connected", tok)
		}
	}

	cs, err := e.connect(t, token)
	if err != nil {
		t.Fatal(err)
	}
	res := call(t, cs, "run_code", map[string]any{"code": "n = 20\nn + 22"})
	if res.IsError || !strings.Contains(textOf(res), "42") {
		t.Fatalf("run_code over HTTP: %q (error %v)", textOf(res), res.IsError)
	}
	if got := textOf(call(t, cs, "run_code", map[string]any{"code": "n * 2"})); !strings.Contains(got, "40") {
		t.Errorf("state between HTTP calls: %q", got)
	}
	// Its sandbox is one of the server's, visible through its API too.
	if n := e.srv.Stats().Sandboxes; n != 1 {
		t.Errorf("the server holds %d sandboxes; want the session's 1", n)
	}
	// No GET stream: the client works without it.
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+server.MCPPath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if resp, err := e.ts.Client().Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /mcp: %v %v; want 405", resp.Status, err)
	} else {
		resp.Body.Close()
	}

	cs.Close() // DELETE: the session ends, its sandbox goes
	waitSandboxes(t, e.srv, 0)
}

func TestHTTPTenants(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t, server.Options{Tokens: map[string]string{"token-of-alice-0123456789": "alice", "token-of-bob-0123456789": "bob"}, MaxSandboxes: 2})
	alice, err := e.connect(t, "token-of-alice-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := e.connect(t, "token-of-bob-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		SandboxID string `json:"sandbox_id"`
	}
	structured(t, call(t, alice, "create_sandbox", nil), &created)
	res := call(t, bob, "run_command", map[string]any{"command": "true", "sandbox_id": created.SandboxID})
	if !res.IsError || !strings.Contains(textOf(res), "no sandbox") {
		t.Errorf("bob used alice's sandbox: %q", textOf(res))
	}
	// Bob cannot use alice's session either, with his own token.
	if resp := e.post(t, "token-of-bob-0123456789", alice.ID(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's token on alice's session: %s; want 403", resp.Status)
	}
	// The server's limit holds for MCP sandboxes: alice's 1 + bob's default = 2.
	call(t, bob, "run_command", map[string]any{"command": "true"})
	res = call(t, alice, "run_command", map[string]any{"command": "true"})
	if !res.IsError || !strings.Contains(textOf(res), "maximum of 2 sandboxes") {
		t.Errorf("a third sandbox over MaxSandboxes 2: %q (error %v)", textOf(res), res.IsError)
	}
	// A sandbox with network is refused: this server gives none.
	res = call(t, bob, "create_sandbox", map[string]any{"network": true})
	if !res.IsError || !strings.Contains(textOf(res), "no network") {
		t.Errorf("create_sandbox with network: %q", textOf(res))
	}
	alice.Close()
	bob.Close()
	waitSandboxes(t, e.srv, 0)
}

func TestHTTPWithoutToken(t *testing.T) {
	t.Parallel()
	e := newHTTPEnv(t, server.Options{})
	cs, err := e.connect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if res := call(t, cs, "run_command", map[string]any{"command": "echo local"}); res.IsError || !strings.Contains(textOf(res), "local") {
		t.Errorf("run_command on a loopback server without token: %q", textOf(res))
	}
	// A web page of another site cannot reach it.
	if resp := e.post(t, "", "", initialize, "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /mcp from another site's page: %s; want 403", resp.Status)
	}
	if resp := e.post(t, "", "", initialize, "Host", "evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /mcp for another host name: %s; want 403", resp.Status)
	}
}

// Shutdown ends the sessions and destroys their sandboxes.
func TestHTTPShutdown(t *testing.T) {
	t.Parallel()
	p := newLocal(t)
	srv := server.New(p, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	e := &httpEnv{srv: srv, ts: ts}
	cs, err := e.connect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	call(t, cs, "run_code", map[string]any{"code": "1"})
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	c := compute.New(compute.Config{Provider: p})
	if list, err := c.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("after Shutdown the provider has %d sandboxes (%v); want none", len(list), err)
	}
}

// The mcp package's own handler, without package server.
func TestHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &mcp.Options{SessionTimeout: -1})
	ts := httptest.NewServer(e.srv.Handler())
	defer ts.Close()
	h := &httpEnv{ts: ts}
	cs, err := h.connect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	call(t, cs, "run_command", map[string]any{"command": "true"})
	if live := e.live(); len(live) != 1 {
		t.Errorf("live sandboxes %v; want 1", live)
	}
	cs.Close()
	deadline := time.Now().Add(hangGuard)
	for len(e.live()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes %v still live %v after the session's DELETE", e.live(), hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An HTTP session that sends nothing for SessionTimeout ends, and its
// sandboxes with it.
func TestHTTPSessionExpires(t *testing.T) {
	t.Parallel()
	// Long enough that the client's own gaps between requests (initialize,
	// initialized, the call) do not end the session on a loaded machine:
	// at 50 ms CI saw the first call cut off ("request terminated without
	// response"). The SDK pauses the timer while a request runs.
	e := newEnv(t, &mcp.Options{SessionTimeout: time.Second})
	ts := httptest.NewServer(e.srv.Handler())
	defer ts.Close()
	h := &httpEnv{ts: ts}
	cs, err := h.connect(t, "")
	if err != nil {
		t.Fatal(err)
	}
	call(t, cs, "run_command", map[string]any{"command": "true"})
	deadline := time.Now().Add(hangGuard)
	for len(e.live()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes %v still live %v after the session's timeout", e.live(), hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "true"}}); err == nil {
		t.Error("a call on the expired session succeeded")
	}
}
