package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// The fuzz targets drive the server's request decoding with any bytes, on
// a provider kept in memory (memProvider) so that each input costs
// microseconds; the behaviour behind the decoding is tested on the local
// provider elsewhere. They check the server's promises for malformed
// input: no panic, no 500, a 4xx (in the flavor's JSON shape, with a
// message) for what it cannot take, and a well-formed reply otherwise.
//
//	go test ./server -run '^$' -fuzz FuzzSeedRequest -fuzztime 20s
//	go test ./server -run '^$' -fuzz FuzzV1Request -fuzztime 20s

const fuzzToken = "fuzz-token-0123456789abcdef"

// fuzzServer is a server on a fresh memProvider with one sandbox, "mem-1",
// created by the tenant the fuzzer's token names.
func fuzzServer(t *testing.T) *server.Server {
	srv := server.New(&memProvider{}, server.Options{
		Tokens:      map[string]string{fuzzToken: "fuzzer", "other-tenant-token-0123456789": "other"},
		IdleTimeout: -1, MaxSandboxes: 4, MaxOutputBytes: 4096, MaxBodyBytes: 1 << 20,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(func() { srv.Close() })
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", wire.ProtocolPath, strings.NewReader(`{"action":"compute.sandbox.create"}`))
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"mem-1"`) {
		t.Fatalf("creating mem-1: %d %s", rec.Code, rec.Body)
	}
	return srv
}

// Real seed requests, as the seed's web apps and this package's tests send
// them, and malformed ones.
var seedCorpus = []string{
	`{"action":"compute.sandbox.create"}`,
	`{"action":"compute.sandbox.create","options":{"runtime":"node","timeout":60000}}`,
	`{"action":"compute.sandbox.create","options":{"sandboxId":"mem-1"}}`,
	`{"action":"compute.sandbox.list"}`,
	`{"action":"compute.sandbox.destroy","sandboxId":"mem-1"}`,
	`{"action":"compute.sandbox.getInfo","sandboxId":"mem-1"}`,
	`{"action":"compute.sandbox.runCode","sandboxId":"mem-1","code":"print(6*7)","runtime":"python"}`,
	`{"action":"compute.sandbox.runCommand","sandboxId":"mem-1","command":"echo","args":["hi","\u0000"]}`,
	`{"action":"compute.sandbox.runCommand","sandboxId":"mem-1","command":"sleep","args":["9"],"commandOptions":{"background":true}}`,
	`{"action":"compute.sandbox.filesystem.writeFile","sandboxId":"mem-1","path":"/w/a.txt","content":"hello"}`,
	`{"action":"compute.sandbox.filesystem.writeFile","sandboxId":"mem-1","path":"b","content":"AAEC/w==","encoding":"base64"}`,
	`{"action":"compute.sandbox.filesystem.readFile","sandboxId":"mem-1","path":"/w/a.txt"}`,
	`{"action":"compute.sandbox.filesystem.readFile","sandboxId":"mem-1","path":"b","encoding":"base64"}`,
	`{"action":"compute.sandbox.filesystem.mkdir","sandboxId":"mem-1","path":"/w/d"}`,
	`{"action":"compute.sandbox.filesystem.readdir","sandboxId":"mem-1","path":"/w"}`,
	`{"action":"compute.sandbox.filesystem.exists","sandboxId":"mem-1","path":"/w/a.txt"}`,
	`{"action":"compute.sandbox.filesystem.remove","sandboxId":"mem-1","path":"/w"}`,
	`{"action":"compute.sandbox.nope","sandboxId":"mem-1"}`,
	`{"action":5}`, `{"action":null}`, `{}`, `[]`, `null`, `"x"`, `{`, ``, `{"action":"compute.sandbox.list"} {}`,
	`{"action":"compute.sandbox.runCommand","sandboxId":"mem-1","command":"x","args":"notalist"}`,
	`{"action":"compute.sandbox.create","options":{"timeout":-1}}`,
	`{"action":"compute.sandbox.create","options":{"timeout":1e300}}`,
	`{"action":"compute.sandbox.filesystem.readFile","sandboxId":"mem-1","path":"a","encoding":"utf16"}`,
	"{\"action\":\"compute.sandbox.filesystem.writeFile\",\"sandboxId\":\"mem-1\",\"path\":\"a\",\"content\":\"\xff\"}",
}

// FuzzSeedRequest fuzzes the body of POST /api/compute.
func FuzzSeedRequest(f *testing.F) {
	for _, s := range seedCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		srv := fuzzServer(t)
		req := httptest.NewRequest("POST", wire.ProtocolPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fuzzToken)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)

		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q for %q", ct, body)
		}
		var m struct {
			Success   *bool   `json:"success"`
			Error     string  `json:"error"`
			SandboxID *string `json:"sandboxId"`
			Provider  *string `json:"provider"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("reply %q to %q is not JSON: %v", rec.Body, body, err)
		}
		if m.Success == nil || m.SandboxID == nil || m.Provider == nil {
			t.Fatalf("reply %q lacks the seed's fields", rec.Body)
		}
		if *m.Success != (rec.Code == 200) || !*m.Success && m.Error == "" {
			t.Fatalf("status %d with reply %q: success and error disagree with the status", rec.Code, rec.Body)
		}
		var v any
		if json.Unmarshal(body, &v) != nil || !isObject(v) {
			if rec.Code != 400 {
				t.Fatalf("malformed body %q: status %d; want 400", body, rec.Code)
			}
		}
	})
}

func isObject(v any) bool { _, ok := v.(map[string]any); return ok }

// v1Corpus is real v1 requests: method, path below V1Path, body.
var v1Corpus = []struct {
	method byte
	path   string
	body   string
}{
	{1, "sandboxes", `{"runtime":"python","timeout":60000,"env":{"A":"1"},"dir":"/w","name":"n","metadata":{"k":"v"}}`},
	{1, "sandboxes", `{"network":"host"}`},
	{1, "sandboxes", `{"networkAllow":["example.com:443"]}`},
	{1, "sandboxes", `{"gpu":"T4"}`},
	{0, "sandboxes", ``},
	{0, "sandboxes/mem-1", ``},
	{3, "sandboxes/mem-1", ``},
	{1, "sandboxes/mem-1/exec", `{"argv":["echo","hi"],"env":{"X":"1"},"dir":"/w","stdin":"aGk=","timeout":1000}`},
	{1, "sandboxes/mem-1/exec", `{"argv":["cat"],"stdinStream":true,"combineOutput":true}`},
	{1, "sandboxes/mem-1/exec", `{"argv":[]}`},
	{0, "sandboxes/mem-1/processes", ``},
	{1, "sandboxes/mem-1/processes/1/stdin", `abc`},
	{1, "sandboxes/mem-1/processes/1/kill", ``},
	{2, "sandboxes/mem-1/files?path=/w/f", "\x00\x01binary"},
	{0, "sandboxes/mem-1/files?path=/w/f", ``},
	{3, "sandboxes/mem-1/files?path=/w/f", ``},
	{0, "sandboxes/mem-1/stat?path=/w/f", ``},
	{0, "sandboxes/mem-1/dir?path=/w", ``},
	{1, "sandboxes/mem-1/dir?path=/w/d", ``},
	{0, "health", ``},
	{4, "sandboxes", `{`},
	{1, "sandboxes/mem-1/exec", `{"argv":"sh"}`},
	{0, "sandboxes/mem-1/files", ``},
	{1, "sandboxes/%2e%2e/exec", `{"argv":["x"]}`},
}

var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH"}

// FuzzV1Request fuzzes the v1 endpoints: method, path and body.
func FuzzV1Request(f *testing.F) {
	for _, c := range v1Corpus {
		f.Add(c.method, c.path, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, method byte, path string, body []byte) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		req, err := http.NewRequest(m, "http://127.0.0.1"+wire.V1Path+"/"+path, bytes.NewReader(body))
		if err != nil {
			t.Skip("not a URL")
		}
		req.RemoteAddr = "127.0.0.1:1"
		req.Header.Set("Authorization", "Bearer "+fuzzToken)
		srv := fuzzServer(t)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)

		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Fatalf("%s %s with %q: status %d: %s", m, path, body, rec.Code, rec.Body)
		}
		ct := rec.Header().Get("Content-Type")
		switch {
		case rec.Code >= 400:
			var er wire.ErrorResponse
			if ct != "application/json" || json.Unmarshal(rec.Body.Bytes(), &er) != nil || er.Error == "" || er.Code == "" {
				t.Fatalf("%s %s: error reply %d %q (%s) is not an ErrorResponse", m, path, rec.Code, rec.Body, ct)
			}
		case rec.Code == http.StatusNoContent:
			if rec.Body.Len() != 0 {
				t.Fatalf("%s %s: 204 with a body %q", m, path, rec.Body)
			}
		case ct == "application/x-ndjson":
			checkStream(t, rec.Body.Bytes())
		case ct == "application/json":
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: reply %q is not JSON", m, path, rec.Body)
			}
		}
		// A JSON endpoint given a body that is not a JSON object says 400.
		route := req.URL.Path
		if m == "POST" && (route == wire.V1Path+"/sandboxes" || route == wire.V1Path+"/sandboxes/mem-1/exec") {
			var v any
			if json.Unmarshal(body, &v) != nil || !isObject(v) {
				if rec.Code != 400 {
					t.Fatalf("POST %s with malformed %q: status %d; want 400", route, body, rec.Code)
				}
			}
		}
	})
}

// checkStream checks an exec stream: JSON events, a start first, an exit
// or error last.
func checkStream(t *testing.T, b []byte) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var events []wire.Event
	for sc.Scan() {
		var ev wire.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("stream line %q is not an event: %v", sc.Bytes(), err)
		}
		events = append(events, ev)
	}
	if len(events) < 2 || events[0].Type != wire.EventStart {
		t.Fatalf("stream %q: want a start event and an end", b)
	}
	if last := events[len(events)-1].Type; last != wire.EventExit && last != wire.EventError {
		t.Fatalf("stream %q ends with %q; want exit or error", b, last)
	}
}

// memProvider is a provider kept in memory, for the fuzz targets: its
// commands print their argv and exit 0 at once; its files are a map.
type memProvider struct {
	mu    sync.Mutex
	n     int
	boxes map[string]*memSandbox
}

func (p *memProvider) Name() string { return "mem" }

func (p *memProvider) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	if opts != nil && opts.GPU != "" {
		return nil, fmt.Errorf("mem: no GPUs: %w", compute.ErrUnsupported)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boxes == nil {
		p.boxes = map[string]*memSandbox{}
	}
	p.n++
	s := &memSandbox{id: fmt.Sprintf("mem-%d", p.n), created: time.Now(), files: map[string][]byte{}, dirs: map[string]bool{"/": true}}
	p.boxes[s.id] = s
	return s, nil
}

func (p *memProvider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.boxes[id]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("mem: sandbox %q: %w", id, compute.ErrNotFound)
}

func (p *memProvider) List(ctx context.Context) ([]driver.Sandbox, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []driver.Sandbox
	for _, s := range p.boxes {
		out = append(out, s)
	}
	return out, nil
}

func (p *memProvider) Destroy(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.boxes, id)
	return nil
}

type memSandbox struct {
	id      string
	created time.Time
	mu      sync.Mutex
	files   map[string][]byte
	dirs    map[string]bool
}

func (s *memSandbox) ID() string { return s.id }

func (s *memSandbox) Info(ctx context.Context) (*compute.Info, error) {
	return &compute.Info{ID: s.id, Provider: "mem", Status: compute.StatusRunning, CreatedAt: s.created}, nil
}

func (s *memSandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	if req.Argv[0] == "no-such-command" {
		return nil, compute.ErrCommandNotFound
	}
	if req.Stdout != nil {
		fmt.Fprintln(req.Stdout, strings.Join(req.Argv, " "))
	}
	return memProcess{}, nil
}

func (s *memSandbox) FileSystem() driver.FileSystem { return s }

type memProcess struct{}

func (memProcess) Wait() (int, error) { return 0, nil }
func (memProcess) Kill() error        { return nil }

func memPath(name string) string {
	if !strings.HasPrefix(name, "/") {
		name = "/w/" + name
	}
	return name
}

func (s *memSandbox) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[memPath(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *memSandbox) WriteFile(ctx context.Context, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[memPath(name)] = b
	return nil
}

func (s *memSandbox) MkdirAll(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirs[memPath(name)] = true
	return nil
}

func (s *memSandbox) ReadDir(ctx context.Context, name string) ([]compute.FileInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := strings.TrimSuffix(memPath(name), "/") + "/"
	var out []compute.FileInfo
	for p, b := range s.files {
		if rest, ok := strings.CutPrefix(p, dir); ok && rest != "" && !strings.Contains(rest, "/") {
			out = append(out, compute.FileInfo{Name: rest, Path: p, Size: int64(len(b)), Mode: 0o644})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *memSandbox) Stat(ctx context.Context, name string) (*compute.FileInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := memPath(name)
	if b, ok := s.files[p]; ok {
		return &compute.FileInfo{Name: p[strings.LastIndex(p, "/")+1:], Path: p, Size: int64(len(b)), Mode: 0o644}, nil
	}
	if s.dirs[p] {
		return &compute.FileInfo{Name: p[strings.LastIndex(p, "/")+1:], Path: p, IsDir: true, Mode: 0o755}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

func (s *memSandbox) RemoveAll(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := memPath(name)
	for f := range s.files {
		if f == p || strings.HasPrefix(f, p+"/") {
			delete(s.files, f)
		}
	}
	delete(s.dirs, p)
	return nil
}
