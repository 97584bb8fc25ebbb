package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a server for the local provider on a loopback port.
type env struct {
	t     *testing.T
	p     *local.Provider // the one start made, if it made one
	prov  driver.Provider // the provider served
	srv   *server.Server
	ts    *httptest.Server
	token string
	logs  *logBuffer
}

// newLocal returns a local provider closed when the test ends, or skips
// the test where sandboxes cannot run.
func newLocal(t testing.TB) *local.Provider {
	t.Helper()
	return newLocalWith(t, local.Options{})
}

// newLocalWith is newLocal with options.
func newLocalWith(t testing.TB, opts local.Options) *local.Provider {
	t.Helper()
	p, err := local.New(opts)
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// start serves p (a fresh local provider when nil) with opts; everything
// is shut down when the test ends.
func start(t *testing.T, p driver.Provider, opts server.Options) *env {
	t.Helper()
	e := &env{t: t, token: opts.Token, logs: &logBuffer{}}
	if p == nil {
		lp := newLocal(t)
		e.p = lp
		p = lp
	}
	e.prov = p
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	}
	e.srv = server.New(p, opts)
	e.ts = httptest.NewServer(e.srv)
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		e.ts.Close()
	})
	return e
}

// request sends a request with the env's token (unless the headers say
// otherwise).
func (e *env) request(method, path string, body io.Reader, hdr ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// jsonBody returns v as a JSON body; a string is sent as it is.
func jsonBody(v any) io.Reader {
	if s, ok := v.(string); ok {
		return strings.NewReader(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return bytes.NewReader(b)
}

// decode reads a JSON reply into a map and closes it.
func decode(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("reply Content-Type %q, body %q; want application/json", ct, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply %q is not a JSON object: %v", b, err)
	}
	return m
}

// seed posts one seed request (a value, or a raw string) and returns the
// status and the reply.
func (e *env) seed(body any) (int, map[string]any) {
	e.t.Helper()
	resp := e.request(http.MethodPost, wire.ProtocolPath, jsonBody(body), "Content-Type", "application/json")
	return resp.StatusCode, decode(e.t, resp)
}

// seedOK posts a seed request that must succeed.
func (e *env) seedOK(body any) map[string]any {
	e.t.Helper()
	code, m := e.seed(body)
	if code != http.StatusOK || m["success"] != true {
		e.t.Fatalf("seed %v: status %d, reply %v; want 200 and success", body, code, m)
	}
	return m
}

// create creates a sandbox through the seed protocol.
func (e *env) create() string {
	e.t.Helper()
	m := e.seedOK(map[string]any{"action": "compute.sandbox.create"})
	id, _ := m["sandboxId"].(string)
	if id == "" {
		e.t.Fatalf("create reply %v has no sandboxId", m)
	}
	return id
}

// v1 sends a v1 request with a JSON body (when in is not nil) and decodes
// a JSON reply into out (when not nil and the reply has a body).
func (e *env) v1(method, path string, in, out any) int {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		body = jsonBody(in)
	}
	resp := e.request(method, wire.V1Path+path, body)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			e.t.Fatalf("%s %s: decoding the %d reply: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}

// v1Err sends a v1 request that must fail with status and code.
func (e *env) v1Err(method, path string, in any, status int, code string) wire.ErrorResponse {
	e.t.Helper()
	var er wire.ErrorResponse
	got := e.v1(method, path, in, &er)
	if got != status || er.Code != code || er.Error == "" {
		e.t.Errorf("%s %s: status %d, %+v; want status %d, code %q and a message", method, path, got, er, status, code)
	}
	return er
}

// shell runs a script in a sandbox through the seed protocol and returns
// its stdout; it must exit 0.
func (e *env) shell(id, script string) string {
	e.t.Helper()
	m := e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", script}})
	res := m["result"].(map[string]any)
	if res["exitCode"] != 0.0 {
		e.t.Fatalf("sh -c %q: result %v; want exit code 0", script, res)
	}
	return res["stdout"].(string)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, d)
		}
	}
}

// noSleep fails unless, soon, no process of the sandbox runs sleep with
// the marker argument. It looks through the provider, not the server: a
// server under test may cut requests short (RequestTimeout), and on a
// loaded machine the look itself can take that long.
func (e *env) noSleep(id, mark string) {
	e.t.Helper()
	script := `for d in /proc/[0-9]*; do a=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline"); case "$a" in "sleep $1"*) echo "$a";; esac; done; exit 0`
	sb, err := compute.New(compute.Config{Provider: e.prov}).Get(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("the sandbox %s: %v", id, err)
	}
	eventually(e.t, 30*time.Second, "the killed process is gone", func() bool {
		res, err := sb.RunCommand(e.t.Context(), "sh", "-c", script, "sh", mark)
		if err != nil {
			e.t.Fatalf("looking for sleep %s: %v", mark, err)
		}
		return res.Stdout == ""
	})
}

// logBuffer collects the server's log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// records returns the JSON log records written so far.
func (l *logBuffer) records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
