package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-of-a-decent-length"
	e := start(t, nil, server.Options{Token: token})
	list := `{"action":"compute.sandbox.list"}`
	for _, c := range []struct {
		name, auth string
		ok         bool
	}{
		{"NoHeader", "", false},
		{"WrongToken", "Bearer nope", false},
		{"Prefix", "Bearer " + token[:10], false},
		{"Longer", "Bearer " + token + "x", false},
		{"NotBearer", "Basic " + token, false},
		{"NoScheme", token, false},
		{"Right", "Bearer " + token, true},
		{"LowercaseScheme", "bearer " + token, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.request("POST", wire.ProtocolPath, strings.NewReader(list), "Authorization", c.auth)
			m := decode(t, resp)
			if c.ok {
				if resp.StatusCode != 200 || m["success"] != true {
					t.Errorf("status %d %v; want 200", resp.StatusCode, m)
				}
				return
			}
			if resp.StatusCode != 401 || m["success"] != false || !strings.Contains(m["error"].(string), "bearer token") || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("status %d %v (WWW-Authenticate %q); want 401 in the seed's shape with a challenge", resp.StatusCode, m, resp.Header.Get("WWW-Authenticate"))
			}
			resp = e.request("GET", wire.V1Path+"/sandboxes", nil, "Authorization", c.auth)
			m = decode(t, resp)
			if resp.StatusCode != 401 || m["code"] != wire.CodeUnauthorized {
				t.Errorf("v1: status %d %v; want 401 unauthorized", resp.StatusCode, m)
			}
		})
	}
	// Refused before anything else: no method or JSON check leaks.
	resp := e.request("GET", wire.ProtocolPath, nil, "Authorization", "")
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET without a token: %d; want 401 before 405", resp.StatusCode)
	}
	// The OpenAPI document and the health check need no token.
	for _, p := range []string{wire.OpenAPIPath, wire.HealthPath} {
		resp := e.request("GET", p, nil, "Authorization", "")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d; want 200", p, resp.StatusCode)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{MaxBodyBytes: 1000, MaxOutputBytes: 100, MaxFileBytes: 5000})
	id := e.create()

	code, m := e.seed(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "f", "content": strings.Repeat("x", 2000)})
	if code != 413 || m["success"] != false || !strings.Contains(m["error"].(string), "1000 bytes") {
		t.Errorf("seed body over MaxBodyBytes: %d %v; want 413 in the seed's shape", code, m)
	}
	e.v1Err("POST", "/sandboxes/"+id+"/exec", wire.ExecRequest{Argv: []string{"echo", strings.Repeat("x", 2000)}}, 413, wire.CodeTooLarge)

	// runCommand keeps MaxOutputBytes of each stream and says it dropped
	// the rest.
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", "head -c 1000 /dev/zero | tr '\\0' o; head -c 50 /dev/zero | tr '\\0' e >&2"}})
	res := m["result"].(map[string]any)
	if res["stdout"] != strings.Repeat("o", 100) || res["stderr"] != strings.Repeat("e", 50) || res["truncated"] != true {
		t.Errorf("runCommand past MaxOutputBytes = %v; want 100 o, 50 e, truncated", res)
	}
	// readFile refuses a file larger than a reply may hold, and says where
	// to get it.
	e.shell(id, "head -c 200 /dev/zero > big")
	code, m = e.seed(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "big"})
	if code != 413 || !strings.Contains(m["error"].(string), "/files?path=big") {
		t.Errorf("readFile past MaxOutputBytes: %d %v; want 413 pointing to the download endpoint", code, m)
	}
	resp := e.request("GET", filesPath(id, "files", "big"), nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 200 {
		t.Errorf("download of the 200-byte file: %d bytes; want 200 (downloads are not limited)", len(b))
	}

	// Uploads past MaxFileBytes are refused and the old content kept, with
	// a known length and streamed.
	resp = e.request("PUT", filesPath(id, "files", "up"), strings.NewReader("old"))
	resp.Body.Close()
	resp = e.request("PUT", filesPath(id, "files", "up"), bytes.NewReader(make([]byte, 6000)))
	m = decode(t, resp)
	if resp.StatusCode != 413 || m["code"] != wire.CodeTooLarge {
		t.Errorf("upload of 6000 bytes with Content-Length: %d %v; want 413", resp.StatusCode, m)
	}
	resp = e.request("PUT", filesPath(id, "files", "up"), io.MultiReader(strings.NewReader(strings.Repeat("n", 6000))))
	m = decode(t, resp)
	if resp.StatusCode != 413 || m["code"] != wire.CodeTooLarge {
		t.Errorf("chunked upload of 6000 bytes: %d %v; want 413", resp.StatusCode, m)
	}
	if got := e.shell(id, "cat up"); got != "old" {
		t.Errorf("after refused uploads the file holds %q; want the old content", got)
	}
}

func TestMaxSandboxes(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{MaxSandboxes: 2})
	a := e.create()
	// This one ends on its own after 1 s.
	e.seedOK(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"timeout": 1000}})
	code, m := e.seed(map[string]any{"action": "compute.sandbox.create"})
	if code != 429 || !strings.Contains(m["error"].(string), "maximum of 2") {
		t.Errorf("third create with MaxSandboxes 2: %d %v; want 429", code, m)
	}
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{}, 429, wire.CodeLimit)
	e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": a})
	e.create()
	// The expired sandbox frees its place.
	eventually(t, 30*time.Second, "the expired sandbox's place is free again", func() bool {
		code, _ := e.seed(map[string]any{"action": "compute.sandbox.create"})
		return code == 200
	})
	if n := e.srv.Stats().Sandboxes; n != 2 {
		t.Errorf("the server holds %d sandboxes; want 2", n)
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{RequestTimeout: 1500 * time.Millisecond})
	id := e.create()
	begin := time.Now()
	code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sleep", "args": []string{"60.777777"}})
	if code != 504 || m["success"] != false || !strings.Contains(m["error"].(string), "1.5s") {
		t.Errorf("runCommand past RequestTimeout: %d %v; want 504 naming the limit", code, m)
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("the request took %v; want it cut near the 1.5s limit, well below 30s", d)
	}
	e.noSleep(id, "60.777777")

	// An exec stream ends with an error event, its process killed.
	s := e.exec(id, wire.ExecRequest{Argv: []string{"sleep", "60.787878"}})
	_, _, last := s.rest()
	if last.Type != wire.EventError || last.Code != wire.CodeTimeout {
		t.Errorf("stream past RequestTimeout ended with %+v; want an error event with code timeout", last)
	}
	e.noSleep(id, "60.787878")
}

func TestIdleReaping(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{IdleTimeout: 300 * time.Millisecond})
	idle := e.create()
	busy := e.create()
	// A running exec stream keeps its sandbox in use past the idle time.
	s := e.exec(busy, wire.ExecRequest{Argv: []string{"sh", "-c", "sleep 1.5; echo still here"}})
	// Polled through the provider: a request for the sandbox would use it.
	eventually(t, 30*time.Second, "the idle sandbox is reaped", func() bool {
		_, err := e.p.Get(t.Context(), idle)
		return errors.Is(err, compute.ErrNotFound)
	})
	if code, _ := e.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": idle}); code != 404 {
		t.Errorf("getInfo of the reaped sandbox: %d; want 404", code)
	}
	if out, _, last := s.rest(); out != "still here\n" || exitCode(last) != 0 {
		t.Errorf("the stream in the busy sandbox: %q %+v; want it to finish", out, last)
	}
	// Then it is reaped too, and the provider has nothing left.
	eventually(t, 30*time.Second, "every idle sandbox is reaped", func() bool {
		list, _ := e.p.List(t.Context())
		return len(list) == 0 && e.srv.Stats().Sandboxes == 0
	})
	if !strings.Contains(e.logs.String(), "destroying idle sandbox") {
		t.Errorf("no log record of the reaping")
	}
}

func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	const token = "network-policy-token-0123456789"
	e := start(t, nil, server.Options{AllowNetwork: true, Token: token})
	var info wire.SandboxInfo
	if code := e.v1("POST", "/sandboxes", wire.CreateRequest{Network: "host"}, &info); code != 201 {
		t.Errorf("create with network host on a server that allows it: %d; want 201", code)
	}
	if code := e.v1("POST", "/sandboxes", wire.CreateRequest{NetworkAllow: []string{"127.0.0.1:9"}}, &info); code != 201 {
		t.Errorf("create with an allowlist on a server that allows network: %d; want 201", code)
	}
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Network: "host", NetworkAllow: []string{"127.0.0.1:9"}}, 400, wire.CodeBadRequest)
	off := start(t, nil, server.Options{Token: token})
	off.v1Err("POST", "/sandboxes", wire.CreateRequest{Network: "host"}, 403, wire.CodeForbidden)
}

// TestNoTokenNoNetwork is the regression test for "a token-less server
// trusts its own sandboxes" (issue 9, finding 10): with AllowNetwork and
// no token, a sandbox on the host's network called the server on
// 127.0.0.1, which counts as this machine, and listed and read every
// other sandbox. A server without a token now gives no sandbox network
// (403 saying to set a token), so none can reach it; with a token, a
// host-network sandbox that calls it is refused like any stranger.
func TestNoTokenNoNetwork(t *testing.T) {
	t.Parallel()
	open := start(t, nil, server.Options{AllowNetwork: true})
	for _, req := range []wire.CreateRequest{{Network: "host"}, {NetworkAllow: []string{"127.0.0.1:" + port(open.ts.URL)}}} {
		er := open.v1Err("POST", "/sandboxes", req, 403, wire.CodeForbidden)
		if !strings.Contains(er.Error, "token") {
			t.Errorf("create %+v on a server without a token: %q; want a refusal that says to set a token", req, er.Error)
		}
	}
	code, m := open.seed(map[string]any{"action": "compute.sandbox.create"})
	if code != 200 {
		t.Fatalf("create with the default network: %d %v", code, m)
	}
	// The default is no network: the server is out of reach.
	call := `import urllib.request, urllib.error, sys
try:
    r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'{"action":"compute.sandbox.list"}'), timeout=10)
    print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("unreachable")
`
	script := func(url string) map[string]any {
		return map[string]any{"action": "compute.sandbox.runCommand", "command": "python3", "args": []string{"-c", call, url}}
	}
	req := script(open.ts.URL + wire.ProtocolPath)
	req["sandboxId"] = m["sandboxId"]
	res := open.seedOK(req)["result"].(map[string]any)
	if strings.TrimSpace(res["stdout"].(string)) != "unreachable" {
		t.Errorf("a sandbox of a server without a token calling it: %v; want it unreachable", res)
	}

	// With a token, a host-network sandbox reaches the port but is refused.
	const token = "sandbox-cannot-know-this-0123456789"
	guarded := start(t, nil, server.Options{AllowNetwork: true, Token: token})
	var info wire.SandboxInfo
	if code := guarded.v1("POST", "/sandboxes", wire.CreateRequest{Network: "host"}, &info); code != 201 {
		t.Fatalf("host-network create with a token: %d", code)
	}
	req = script(guarded.ts.URL + wire.ProtocolPath)
	req["sandboxId"] = info.ID
	res = guarded.seedOK(req)["result"].(map[string]any)
	if strings.TrimSpace(res["stdout"].(string)) != "401" {
		t.Errorf("a host-network sandbox calling its server without the token: %v; want 401", res)
	}
}

// port is the port of a URL such as http://127.0.0.1:PORT.
func port(url string) string {
	return url[strings.LastIndex(url, ":")+1:]
}

// failing is a provider whose Create fails the way it is told.
type failing struct {
	driver.Provider
	err   error
	panic bool
}

func (f failing) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	if f.panic {
		panic("provider bug: nil map")
	}
	return nil, f.err
}

func TestProviderFailures(t *testing.T) {
	t.Parallel()
	base := newLocal(t)
	for _, c := range []struct {
		name   string
		p      failing
		status int
		code   string
		msg    string
	}{
		{"Failure", failing{base, errors.New("backend exploded"), false}, 500, wire.CodeInternal, "backend exploded"},
		{"Quota", failing{base, compute.ErrQuotaExceeded, false}, 429, wire.CodeLimit, "quota exceeded"},
		{"Unsupported", failing{base, compute.ErrUnsupported, false}, 501, wire.CodeUnsupported, "not supported by this provider"},
		{"Auth", failing{base, compute.ErrAuthentication, false}, 500, wire.CodeProviderAuthentication, "authentication failed"},
		{"MissingCredentials", failing{base, compute.ErrMissingCredentials, false}, 500, wire.CodeMissingCredentials, "missing credentials"},
		{"Panic", failing{base, nil, true}, 500, wire.CodeInternal, "internal server error (logged by the server)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, c.p, server.Options{})
			code, m := e.seed(map[string]any{"action": "compute.sandbox.create"})
			if code != c.status || m["success"] != false || !strings.Contains(m["error"].(string), c.msg) || strings.Contains(m["error"].(string), "goroutine") {
				t.Errorf("seed create: %d %v; want %d with %q and no stack", code, m, c.status, c.msg)
			}
			er := e.v1Err("POST", "/sandboxes", wire.CreateRequest{}, c.status, c.code)
			if !strings.Contains(er.Error, c.msg) {
				t.Errorf("v1 create: %+v; want %q", er, c.msg)
			}
			if c.p.panic && !strings.Contains(e.logs.String(), "provider bug: nil map") {
				t.Errorf("the panic is not in the server's log")
			}
			// The server still works.
			if m := e.seedOK(map[string]any{"action": "compute.sandbox.list"}); m["success"] != true {
				t.Errorf("list after the failure: %v", m)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	e.seed(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id})
	var found bool
	for _, r := range e.logs.records() {
		if r["msg"] == "request" && r["action"] == "compute.sandbox.runCode" {
			found = true
			if r["status"] != 400.0 || r["sandbox"] != id || r["error"] != "code is required" || r["method"] != "POST" || r["path"] != wire.ProtocolPath || r["duration"] == nil || r["remote"] == nil {
				t.Errorf("access-log record %v; want method, path, status 400, action, sandbox, error, duration, remote", r)
			}
		}
	}
	if !found {
		t.Errorf("no access-log record for the runCode request in:\n%s", e.logs.String())
	}
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// oom is a provider whose commands all end killed for their memory limit,
// as the local provider reports it with cgroups.
type oom struct{ driver.Provider }

type oomSandbox struct{ driver.Sandbox }

type oomProcess struct{ driver.Process }

func (o oom) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	ps, err := o.Provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	return oomSandbox{ps}, nil
}

func (s oomSandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	p, err := s.Sandbox.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return oomProcess{p}, nil
}

func (p oomProcess) Wait() (int, error) {
	p.Process.Wait()
	return 137, fmt.Errorf("command killed for going over the 1 MiB memory limit: %w", compute.ErrOutOfMemory)
}

func TestOutOfMemory(t *testing.T) {
	t.Parallel()
	e := start(t, oom{newLocal(t)}, server.Options{})
	id := e.create()
	s := e.exec(id, wire.ExecRequest{Argv: []string{"echo", "hi"}})
	out, _, last := s.rest()
	if out != "hi\n" || exitCode(last) != 137 || last.Code != wire.CodeOutOfMemory || !strings.Contains(last.Error, "memory limit") {
		t.Errorf("stream of an OOM-killed command: %q, %+v; want its output, then exit 137 with code out_of_memory", out, last)
	}
	code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "echo"})
	if code != 422 || m["success"] != false || !strings.Contains(m["error"].(string), "memory limit") {
		t.Errorf("seed runCommand of an OOM-killed command: %d %v; want 422 saying so", code, m)
	}
}
