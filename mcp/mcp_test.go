package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/mcp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangGuard turns a hang into a failure; no test measures time against it.
const hangGuard = 3 * time.Minute

// newLocal returns a local provider closed when the test ends, or skips
// the test where sandboxes cannot run here.
func newLocal(t testing.TB) *local.Provider {
	t.Helper()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// env is an MCP server on a local provider of its own.
type env struct {
	t   *testing.T
	p   *local.Provider
	c   *compute.Compute
	srv *mcp.Server
}

func newEnv(t *testing.T, opts *mcp.Options) *env {
	t.Helper()
	p := newLocal(t)
	c := compute.New(compute.Config{Provider: p, NoFallback: true})
	srv := mcp.NewServer(c, opts)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{t: t, p: p, c: c, srv: srv}
}

// live returns the ids of the provider's live sandboxes.
func (e *env) live() []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	list, err := e.c.List(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, sb := range list {
		ids = append(ids, sb.ID())
	}
	return ids
}

// conn is a client session over the in-memory transport.
type conn struct {
	t    *testing.T
	cs   *sdk.ClientSession
	done chan error // Run's result
	once sync.Once
}

// connect opens a session with the env's server in memory.
func (e *env) connect() *conn {
	e.t.Helper()
	ct, st := sdk.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(context.Background(), st) }()
	client := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &conn{t: e.t, cs: cs, done: done}
	e.t.Cleanup(func() { c.close() })
	return c
}

// close ends the session and waits until the server has cleaned it up.
func (c *conn) close() {
	c.t.Helper()
	c.once.Do(func() {
		c.cs.Close()
		select {
		case err := <-c.done:
			if err != nil {
				c.t.Errorf("Run: %v", err)
			}
		case <-time.After(hangGuard):
			c.t.Fatalf("Run has not returned %v after the session closed", hangGuard)
		}
	})
}

// call calls a tool; a protocol error fails the test.
func call(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s(%v): %v", name, args, err)
	}
	return res
}

func (c *conn) call(name string, args map[string]any) *sdk.CallToolResult {
	c.t.Helper()
	return call(c.t, c.cs, name, args)
}

// ok calls a tool that must succeed, and returns its text.
func (c *conn) ok(name string, args map[string]any) string {
	c.t.Helper()
	res := c.call(name, args)
	if res.IsError {
		c.t.Fatalf("%s(%v) is an error: %s", name, args, textOf(res))
	}
	return textOf(res)
}

// fails calls a tool that must give an error result, and returns its text.
func (c *conn) fails(name string, args map[string]any, want string) string {
	c.t.Helper()
	res := c.call(name, args)
	if !res.IsError {
		c.t.Fatalf("%s(%v) succeeded with %q; want an error result", name, args, textOf(res))
	}
	if !strings.Contains(textOf(res), want) {
		c.t.Errorf("%s(%v): error %q; want it to say %q", name, args, textOf(res), want)
	}
	return textOf(res)
}

func textOf(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// structured decodes a result's structured content into v.
func structured(t *testing.T, res *sdk.CallToolResult, v any) {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
}

func TestTools(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	res, err := c.cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"run_code":        {"code", "language", "sandbox_id", "context_id"},
		"run_command":     {"command", "sandbox_id", "cwd", "timeout_seconds"},
		"write_file":      {"path", "content", "sandbox_id"},
		"read_file":       {"path", "sandbox_id"},
		"list_files":      {"path", "sandbox_id"},
		"create_sandbox":  {"timeout_seconds", "network", "image"},
		"destroy_sandbox": {"sandbox_id"},
		"list_sandboxes":  {},
	}
	got := map[string]bool{}
	for _, tool := range res.Tools {
		got[tool.Name] = true
		args, ok := want[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %q", tool.Name)
			continue
		}
		if len(tool.Description) < 40 {
			t.Errorf("%s: description %q is too short for a model to act on", tool.Name, tool.Description)
		}
		schema, _ := tool.InputSchema.(map[string]any)
		if schema["type"] != "object" {
			t.Errorf("%s: input schema %v is not an object schema", tool.Name, tool.InputSchema)
		}
		props, _ := schema["properties"].(map[string]any)
		if len(props) != len(args) {
			t.Errorf("%s: arguments %v; want %v", tool.Name, props, args)
		}
		for _, a := range args {
			p, ok := props[a].(map[string]any)
			if !ok {
				t.Errorf("%s: no argument %q in %v", tool.Name, a, props)
				continue
			}
			if d, _ := p["description"].(string); d == "" {
				t.Errorf("%s: argument %q has no description", tool.Name, a)
			}
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("no tool %q", name)
		}
	}
}

func TestRunCodeKeepsState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	c.ok("run_code", map[string]any{"code": "x = 41\nprint('set')"})
	if got := c.ok("run_code", map[string]any{"code": "x + 1"}); !strings.Contains(got, "42") {
		t.Errorf("x + 1 in the next call gave %q; want 42 (variables survive between calls)", got)
	}
	c.ok("run_code", map[string]any{"code": "let y = 6", "language": "javascript"})
	res := c.call("run_code", map[string]any{"code": "y * 7", "language": "javascript"})
	if res.IsError || !strings.Contains(textOf(res), "42") {
		t.Errorf("javascript y * 7 gave %q (error %v); want 42", textOf(res), res.IsError)
	}
	var out struct {
		SandboxID string `json:"sandbox_id"`
		ContextID string `json:"context_id"`
		Language  string `json:"language"`
	}
	structured(t, res, &out)
	if out.Language != "javascript" || out.SandboxID == "" || out.ContextID == "" {
		t.Errorf("structured %+v; want the sandbox, context and language", out)
	}
	// The context can be named, and it is the same interpreter.
	if got := c.ok("run_code", map[string]any{"code": "y + 1", "context_id": out.ContextID, "sandbox_id": out.SandboxID}); !strings.Contains(got, "7") {
		t.Errorf("y + 1 in context %s gave %q; want 7", out.ContextID, got)
	}
	// Everything ran in one sandbox: the session's default.
	if ids := e.live(); len(ids) != 1 || ids[0] != out.SandboxID {
		t.Errorf("live sandboxes %v; want only the default one, %s", ids, out.SandboxID)
	}
}

func TestRunCodeError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	got := c.fails("run_code", map[string]any{"code": "print('before')\ndef f():\n    raise ValueError('boom')\nf()"}, "ValueError")
	for _, want := range []string{"before", "boom", "Traceback", "f()"} {
		if !strings.Contains(got, want) {
			t.Errorf("error result %q does not contain %q", got, want)
		}
	}
	if strings.Contains(got, "\x1b[") {
		t.Errorf("error result %q has terminal escapes", got)
	}
	// The interpreter survives its exception.
	c.ok("run_code", map[string]any{"code": "z = 1"})
	if got := c.ok("run_code", map[string]any{"code": "z"}); !strings.Contains(got, "1") {
		t.Errorf("z after an exception gave %q", got)
	}
	c.fails("run_code", map[string]any{"code": "throw new TypeError('bad')", "language": "javascript"}, "TypeError")
}

// A tiny PNG (1x1), as displayed by IPython.
const pngBase64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

func TestRunCodeImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	if res := c.call("run_code", map[string]any{"code": "import IPython"}); res.IsError {
		t.Skipf("skipped: the sandbox's Python has no IPython, so no rich display: %s", textOf(res))
	}
	res := c.call("run_code", map[string]any{"code": "import base64\nfrom IPython.display import Image, display\n" +
		"display(Image(data=base64.b64decode('" + pngBase64 + "')))\nprint('shown')"})
	if res.IsError {
		t.Fatalf("error: %s", textOf(res))
	}
	var images int
	for _, ct := range res.Content {
		if img, ok := ct.(*sdk.ImageContent); ok {
			images++
			if img.MIMEType != "image/png" || !strings.HasPrefix(string(img.Data), "\x89PNG") {
				t.Errorf("image %s of %d bytes; want a PNG", img.MIMEType, len(img.Data))
			}
		}
	}
	if images != 1 || !strings.Contains(textOf(res), "shown") {
		t.Errorf("%d images, text %q; want one PNG and the printed text", images, textOf(res))
	}
}

func TestRunCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	res := c.call("run_command", map[string]any{"command": "echo out; echo err >&2; exit 3"})
	if res.IsError {
		t.Fatalf("error: %s", textOf(res))
	}
	var out struct {
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
		ExitCode int    `json:"exit_code"`
	}
	structured(t, res, &out)
	if out.Stdout != "out\n" || out.Stderr != "err\n" || out.ExitCode != 3 {
		t.Errorf("structured %+v; want stdout out, stderr err, exit 3", out)
	}
	if txt := textOf(res); !strings.Contains(txt, "exit code: 3") || !strings.Contains(txt, "out") || !strings.Contains(txt, "err") {
		t.Errorf("text %q; want the exit code and both streams", txt)
	}
	// cwd, and the files run_code sees.
	c.ok("run_command", map[string]any{"command": "mkdir -p work && echo hi > work/f.txt"})
	if got := c.ok("run_command", map[string]any{"command": "cat f.txt; pwd", "cwd": "work"}); !strings.Contains(got, "hi") || !strings.Contains(got, "/work") {
		t.Errorf("cat in cwd work gave %q", got)
	}
	if got := c.ok("run_code", map[string]any{"code": "print(open('work/f.txt').read().strip() * 2)"}); !strings.Contains(got, "hihi") {
		t.Errorf("run_code reading the file gave %q", got)
	}
	// A timeout kills it, and says so.
	res = c.call("run_command", map[string]any{"command": "echo started; sleep 600", "timeout_seconds": 0.5})
	structured(t, res, &out)
	if out.ExitCode != 124 || !strings.Contains(textOf(res), "timeout_seconds") || !strings.Contains(out.Stdout, "started") {
		t.Errorf("timed-out command: %+v, text %q; want exit 124, its output and a note", out, textOf(res))
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	got := c.ok("write_file", map[string]any{"path": "dir/sub/notes.txt", "content": "héllo\nworld\n"})
	if !strings.Contains(got, "13 bytes") || !strings.Contains(got, "dir/sub/notes.txt") {
		t.Errorf("write_file said %q", got)
	}
	if got := c.ok("read_file", map[string]any{"path": "dir/sub/notes.txt"}); got != "héllo\nworld\n" {
		t.Errorf("read_file gave %q", got)
	}
	c.ok("write_file", map[string]any{"path": "dir/empty.txt", "content": ""})
	if got := c.ok("read_file", map[string]any{"path": "dir/empty.txt"}); !strings.Contains(got, "empty") {
		t.Errorf("read_file of an empty file gave %q", got)
	}
	res := c.call("list_files", map[string]any{"path": "dir"})
	var out struct {
		Path    string `json:"path"`
		Entries []struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
			Size int64  `json:"size"`
		} `json:"entries"`
	}
	structured(t, res, &out)
	if len(out.Entries) != 2 || out.Entries[0].Name != "empty.txt" || out.Entries[0].Kind != "file" ||
		out.Entries[1].Name != "sub" || out.Entries[1].Kind != "directory" {
		t.Errorf("list_files dir: %+v", out)
	}
	if txt := textOf(res); !strings.Contains(txt, "sub/") || !strings.Contains(txt, "empty.txt  0 bytes") {
		t.Errorf("list_files text %q", txt)
	}
	if got := c.ok("list_files", nil); !strings.Contains(got, "dir/") {
		t.Errorf("list_files of the working directory: %q", got)
	}
	c.fails("read_file", map[string]any{"path": "missing.txt"}, "no such file")
	c.fails("read_file", map[string]any{"path": "dir"}, "is a directory")
	c.fails("list_files", map[string]any{"path": "dir/empty.txt"}, "read_file")
	c.fails("list_files", map[string]any{"path": "nowhere"}, "no such file")
	// A binary file: a note with its type and size, not mojibake.
	c.ok("run_command", map[string]any{"command": `printf '\000\001\002\003binary' > blob.bin`})
	if got := c.ok("read_file", map[string]any{"path": "blob.bin"}); !strings.Contains(got, "binary file") || !strings.Contains(got, "10 bytes") {
		t.Errorf("read_file of a binary file: %q", got)
	}
	c.ok("run_command", map[string]any{"command": "echo " + pngBase64 + " | base64 -d > dot.png"})
	res = c.call("read_file", map[string]any{"path": "dot.png"})
	if len(res.Content) != 2 {
		t.Errorf("read_file of a PNG: %d contents, %q; want a note and the image", len(res.Content), textOf(res))
	} else if img, ok := res.Content[1].(*sdk.ImageContent); !ok || img.MIMEType != "image/png" {
		t.Errorf("read_file of a PNG: %#v", res.Content[1])
	}
}

func TestOutputIsCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &mcp.Options{MaxOutput: 1000})
	c := e.connect()
	res := c.call("run_command", map[string]any{"command": "echo FIRST; head -c 300000 /dev/zero | tr '\\0' x; echo; echo LAST; echo oops >&2"})
	txt := textOf(res)
	if len(txt) > 1500 {
		t.Errorf("the answer has %d characters; want about the cap of 1000", len(txt))
	}
	for _, want := range []string{"FIRST", "LAST", "oops", "bytes of stdout cut here", "at most 1000 characters"} {
		if !strings.Contains(txt, want) {
			t.Errorf("capped answer %q does not contain %q", txt, want)
		}
	}
	var out struct {
		Stdout string `json:"stdout"`
		Stderr string `json:"stderr"`
	}
	structured(t, res, &out)
	if len(out.Stdout) > 1200 || out.Stderr != "oops\n" {
		t.Errorf("structured stdout has %d bytes, stderr %q; want them capped too, and the short stderr whole", len(out.Stdout), out.Stderr)
	}
	code := c.ok("run_code", map[string]any{"code": "print('a' * 100000)\n'b' * 100000"})
	if len(code) > 1500 || !strings.Contains(code, "cut here") {
		t.Errorf("run_code answer of %d characters: %.300q...", len(code), code)
	}
	c.ok("run_command", map[string]any{"command": "head -c 200000 /dev/zero | tr '\\0' y > big.txt"})
	if got := c.ok("read_file", map[string]any{"path": "big.txt"}); len(got) > 1500 || !strings.Contains(got, "bytes of the file cut here (200000 in all)") {
		t.Errorf("read_file answer of %d characters: %.300q...", len(got), got)
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	c.fails("run_code", map[string]any{}, "code")
	c.fails("run_code", map[string]any{"code": "1", "language": "cobol"}, "language")
	c.fails("run_code", map[string]any{"code": "   "}, "empty")
	c.fails("run_code", map[string]any{"code": 5}, "code")
	c.fails("run_code", map[string]any{"code": "1", "colour": "red"}, "colour")
	c.fails("run_code", map[string]any{"code": "1", "sandbox_id": "sb-nope"}, "no sandbox \"sb-nope\" in this session")
	c.fails("run_code", map[string]any{"code": "1", "context_id": "nope"}, "no code context")
	c.fails("run_command", map[string]any{"command": ""}, "empty")
	c.fails("run_command", map[string]any{"command": "true", "timeout_seconds": -1}, "negative")
	c.fails("run_command", map[string]any{"command": "pwd", "cwd": "/no/such/dir"}, "/no/such/dir")
	c.fails("write_file", map[string]any{"path": "x"}, "content")
	c.fails("write_file", map[string]any{"path": "", "content": "x"}, "path")
	c.fails("destroy_sandbox", map[string]any{"sandbox_id": "sb-nope"}, "no sandbox")
	c.fails("destroy_sandbox", map[string]any{}, "sandbox_id")
	c.fails("create_sandbox", map[string]any{"network": true}, "no network access")
	c.fails("create_sandbox", map[string]any{"image": "python:3.13-slim"}, "image")
	c.fails("create_sandbox", map[string]any{"timeout_seconds": "soon"}, "timeout_seconds")
	// After all that, the session works.
	if got := c.ok("run_code", map[string]any{"code": "6 * 7"}); !strings.Contains(got, "42") {
		t.Errorf("run_code after bad calls: %q", got)
	}
}

func TestSandboxes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	if got := c.ok("list_sandboxes", nil); !strings.Contains(got, "no sandboxes") {
		t.Errorf("list_sandboxes of a new session: %q", got)
	}
	res := c.call("create_sandbox", map[string]any{"timeout_seconds": 600, "network": false})
	var created struct {
		SandboxID string `json:"sandbox_id"`
	}
	structured(t, res, &created)
	if created.SandboxID == "" || !strings.Contains(textOf(res), created.SandboxID) {
		t.Fatalf("create_sandbox: %q, structured %+v", textOf(res), created)
	}
	// Files in one sandbox are not in the other.
	c.ok("write_file", map[string]any{"path": "only-here.txt", "content": "x", "sandbox_id": created.SandboxID})
	c.fails("read_file", map[string]any{"path": "only-here.txt"}, "no such file")
	c.ok("read_file", map[string]any{"path": "only-here.txt", "sandbox_id": created.SandboxID})

	res = c.call("list_sandboxes", nil)
	var list struct {
		Sandboxes []struct {
			SandboxID string `json:"sandbox_id"`
			Default   bool   `json:"default"`
		} `json:"sandboxes"`
	}
	structured(t, res, &list)
	if len(list.Sandboxes) != 2 || list.Sandboxes[0].SandboxID != created.SandboxID || list.Sandboxes[0].Default || !list.Sandboxes[1].Default {
		t.Errorf("list_sandboxes: %+v; want the created one, then the default", list)
	}
	def := list.Sandboxes[1].SandboxID
	if live := e.live(); len(live) != 2 {
		t.Errorf("live sandboxes %v; want 2", live)
	}
	c.ok("destroy_sandbox", map[string]any{"sandbox_id": created.SandboxID})
	c.fails("run_command", map[string]any{"command": "true", "sandbox_id": created.SandboxID}, "no sandbox")
	// Destroying the default one: the next call gets a fresh one.
	c.ok("destroy_sandbox", map[string]any{"sandbox_id": def})
	if live := e.live(); len(live) != 0 {
		t.Errorf("live sandboxes %v after destroying both; want none", live)
	}
	c.fails("read_file", map[string]any{"path": "only-here.txt"}, "no such file")
	res = c.call("list_sandboxes", nil)
	structured(t, res, &list)
	if len(list.Sandboxes) != 1 || list.Sandboxes[0].SandboxID == def || !list.Sandboxes[0].Default {
		t.Errorf("after destroying the default: %+v; want a new default", list)
	}
}

func TestSessionsAreIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a, b := e.connect(), e.connect()
	var created struct {
		SandboxID string `json:"sandbox_id"`
	}
	structured(t, a.call("create_sandbox", nil), &created)
	a.ok("run_code", map[string]any{"code": "secret = 'a'"})
	id := created.SandboxID
	for tool, args := range map[string]map[string]any{
		"run_command":     {"sandbox_id": id, "command": "true"},
		"read_file":       {"sandbox_id": id, "path": "x"},
		"list_files":      {"sandbox_id": id},
		"run_code":        {"sandbox_id": id, "code": "1"},
		"write_file":      {"sandbox_id": id, "path": "x", "content": "x"},
		"destroy_sandbox": {"sandbox_id": id},
	} {
		b.fails(tool, args, "no sandbox")
	}
	if got := b.ok("list_sandboxes", nil); strings.Contains(got, created.SandboxID) {
		t.Errorf("session b lists session a's sandbox: %q", got)
	}
	b.fails("run_code", map[string]any{"code": "secret"}, "NameError")
	// a's sandbox survived b's attempts.
	a.ok("run_command", map[string]any{"command": "true", "sandbox_id": created.SandboxID})
}

func TestSessionEndDestroysSandboxes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.connect()
	c.ok("run_code", map[string]any{"code": "1"})
	c.ok("create_sandbox", nil)
	c.ok("run_code", map[string]any{"code": "1", "language": "javascript"})
	if live := e.live(); len(live) != 2 {
		t.Fatalf("live sandboxes %v; want 2", live)
	}
	c.close() // waits for Run, which cleans up
	if live := e.live(); len(live) != 0 {
		t.Errorf("live sandboxes %v after the session ended; want none", live)
	}
}

func TestCloseEndsSessions(t *testing.T) {
	t.Parallel()
	p := newLocal(t)
	c := compute.New(compute.Config{Provider: p, NoFallback: true})
	srv := mcp.NewServer(c, nil)
	ct, st := sdk.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), st) }()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call(t, cs, "run_command", map[string]any{"command": "true"})
	// A call in flight when the server closes ends too.
	var wg sync.WaitGroup
	wg.Go(func() {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_command", Arguments: map[string]any{"command": "echo started; sleep 3600"}})
		if err == nil && !res.IsError && strings.Contains(textOf(res), "exit code: 0") {
			t.Errorf("the sleep finished normally: %s", textOf(res))
		}
	})
	time.Sleep(100 * time.Millisecond) // let the call start; the test holds either way
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Run did not return after Close")
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 0 {
		t.Errorf("after Close: %d sandboxes (%v); want none", len(list), err)
	}
	if err := srv.Run(ctx, st); err == nil {
		t.Error("Run after Close succeeded")
	}
}
