package server_test

import (
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// keys returns a reply's field names, sorted.
func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func checkKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Errorf("%s: reply fields %q; want exactly %q (reply %v)", what, got, want, m)
	}
}

// TestSeedActions runs every seed action once, through the whole life of
// a sandbox, and checks the exact shape of each reply.
func TestSeedActions(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	before := time.Now()

	m := e.seedOK(map[string]any{"action": "compute.sandbox.create"})
	checkKeys(t, "create", m, "success", "sandboxId", "provider")
	id := m["sandboxId"].(string)
	if m["provider"] != "local" {
		t.Errorf("create: provider %v; want local", m["provider"])
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": id})
	checkKeys(t, "getInfo", m, "success", "sandboxId", "provider", "info")
	info := m["info"].(map[string]any)
	checkKeys(t, "getInfo.info", info, "id", "provider", "runtime", "status", "createdAt", "timeout")
	if info["id"] != id || info["provider"] != "local" || info["runtime"] != "python" || info["status"] != "running" {
		t.Errorf("getInfo.info = %v; want id %s, provider local, runtime python (the seed's default), status running", info, id)
	}
	created, err := time.Parse("2006-01-02T15:04:05.000Z", info["createdAt"].(string))
	if err != nil || created.Before(before.Add(-time.Minute)) || created.After(time.Now().Add(time.Minute)) {
		t.Errorf("getInfo.info.createdAt = %v (%v); want an ISO-8601 time like toISOString's, near now", info["createdAt"], err)
	}
	if info["timeout"] != 300000.0 {
		t.Errorf("getInfo.info.timeout = %v; want 300000 (ms, the local default)", info["timeout"])
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": `print("hello from python")`})
	checkKeys(t, "runCode", m, "success", "sandboxId", "provider", "result")
	res := m["result"].(map[string]any)
	checkKeys(t, "runCode.result", res, "stdout", "stderr", "exitCode", "executionTime")
	if res["stdout"] != "hello from python\n" || res["exitCode"] != 0.0 || m["sandboxId"] != id {
		t.Errorf("runCode = %v; want stdout %q, exit 0", m, "hello from python\n")
	}
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": `console.log(6 * 7)`, "runtime": "node"})
	if res := m["result"].(map[string]any); res["stdout"] != "42\n" {
		t.Errorf("runCode node = %v; want stdout 42", res)
	}
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": `raise Exception("boom")`})
	if res := m["result"].(map[string]any); res["exitCode"] == 0.0 || !strings.Contains(res["stderr"].(string), "boom") {
		t.Errorf("runCode raising = %v; want success with a non-zero exit code and the traceback", res)
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "printf", "args": []string{"%s|", "a b", "$HOME", ""}})
	res = m["result"].(map[string]any)
	checkKeys(t, "runCommand.result", res, "stdout", "stderr", "exitCode", "executionTime")
	if res["stdout"] != "a b|$HOME||" || res["exitCode"] != 0.0 {
		t.Errorf("runCommand printf = %v; want the arguments untouched by any shell", res)
	}
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", "echo out; echo err >&2; exit 3"}})
	if res := m["result"].(map[string]any); res["stdout"] != "out\n" || res["stderr"] != "err\n" || res["exitCode"] != 3.0 {
		t.Errorf("runCommand exit 3 = %v; want success, stdout out, stderr err, exit 3", res)
	}
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "no-such-command-xyz"})
	if res := m["result"].(map[string]any); res["exitCode"] != 127.0 || !strings.Contains(res["stderr"].(string), "command not found") {
		t.Errorf("runCommand of a missing command = %v; want exit 127 and 'command not found'", res)
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "/tmp/seed/dir/a.txt", "content": "line 1\n$HOME `x` \"q\"\n\n"})
	checkKeys(t, "writeFile", m, "success", "sandboxId", "provider")
	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "/tmp/seed/dir/a.txt"})
	checkKeys(t, "readFile", m, "success", "sandboxId", "provider", "fileContent")
	if m["fileContent"] != "line 1\n$HOME `x` \"q\"\n\n" {
		t.Errorf("readFile = %q; want exactly what was written", m["fileContent"])
	}
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "/tmp/seed/empty.txt", "content": ""})
	if m := e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "/tmp/seed/empty.txt"}); m["fileContent"] != "" {
		t.Errorf("readFile of an empty file = %v; want fileContent \"\"", m)
	}

	for path, want := range map[string]bool{"/tmp/seed/dir/a.txt": true, "/tmp/seed": true, "/tmp/seed/missing": false} {
		m := e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.exists", "sandboxId": id, "path": path})
		checkKeys(t, "exists", m, "success", "sandboxId", "provider", "exists")
		if m["exists"] != want {
			t.Errorf("exists(%s) = %v; want %v", path, m["exists"], want)
		}
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.mkdir", "sandboxId": id, "path": "/tmp/seed/made/deep"})
	checkKeys(t, "mkdir", m, "success", "sandboxId", "provider")
	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id, "path": "/tmp/seed"})
	checkKeys(t, "readdir", m, "success", "sandboxId", "provider", "files")
	files := m["files"].([]any)
	var names []string
	for _, f := range files {
		f := f.(map[string]any)
		checkKeys(t, "readdir entry", f, "name", "path", "isDirectory", "size", "lastModified")
		names = append(names, f["name"].(string))
		if _, err := time.Parse(time.RFC3339Nano, f["lastModified"].(string)); err != nil {
			t.Errorf("readdir entry lastModified %v: %v; want ISO-8601", f["lastModified"], err)
		}
		if f["path"] != "/tmp/seed/"+f["name"].(string) {
			t.Errorf("readdir entry %v: path; want /tmp/seed/NAME", f)
		}
		if want := f["name"] != "empty.txt"; f["isDirectory"] != want {
			t.Errorf("readdir entry %v: isDirectory; want %v", f, want)
		}
	}
	if !slices.Equal(names, []string{"dir", "empty.txt", "made"}) {
		t.Errorf("readdir names %q; want dir, empty.txt, made", names)
	}
	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id, "path": "/tmp/seed/made/deep"})
	if f, ok := m["files"].([]any); !ok || len(f) != 0 {
		t.Errorf("readdir of an empty directory: files %#v; want []", m["files"])
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.remove", "sandboxId": id, "path": "/tmp/seed/dir"})
	checkKeys(t, "remove", m, "success", "sandboxId", "provider")
	if m := e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.exists", "sandboxId": id, "path": "/tmp/seed/dir/a.txt"}); m["exists"] != false {
		t.Errorf("exists after remove = %v; want false", m["exists"])
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.list"})
	checkKeys(t, "list", m, "success", "sandboxId", "provider", "sandboxes")
	if m["sandboxId"] != "" {
		t.Errorf("list: sandboxId %v; want \"\"", m["sandboxId"])
	}
	if list := m["sandboxes"].([]any); len(list) != 1 || list[0].(map[string]any)["sandboxId"] != id || list[0].(map[string]any)["provider"] != "local" {
		t.Errorf("list: sandboxes %v; want [{sandboxId: %s, provider: local}]", list, id)
	}

	m = e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
	checkKeys(t, "destroy", m, "success", "sandboxId", "provider")
	if m["sandboxId"] != id {
		t.Errorf("destroy: sandboxId %v; want %s", m["sandboxId"], id)
	}
	if m := e.seedOK(map[string]any{"action": "compute.sandbox.list"}); len(m["sandboxes"].([]any)) != 0 {
		t.Errorf("list after destroy: %v; want []", m["sandboxes"])
	}
	// Destroying again, or an id never seen, is no error (as in the seed).
	e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
	e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": "never-was"})
	if code, m := e.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": id}); code != http.StatusNotFound || m["error"] != "Sandbox "+id+" not found" {
		t.Errorf("getInfo after destroy: %d %v; want 404 'Sandbox %s not found'", code, m, id)
	}
	if ids, _ := e.p.List(t.Context()); len(ids) != 0 {
		t.Errorf("the provider still has %d sandboxes after destroy", len(ids))
	}
}

// TestSeedErrors checks every error path of the seed protocol: status,
// the seed's message, and the seed's reply shape.
func TestSeedErrors(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "/tmp/f", "content": "x"})

	for _, c := range []struct {
		name    string
		body    any
		status  int
		err     string // exact, or a prefix when it ends with "..."
		sandbox string
	}{
		{"InvalidJSON", `{"action": `, 400, "Invalid JSON in request body", ""},
		{"EmptyBody", ``, 400, "Invalid JSON in request body", ""},
		{"TrailingData", `{"action":"compute.sandbox.list"} x`, 400, "Invalid JSON in request body", ""},
		{"NotAnObject", `[1, 2]`, 400, "Invalid JSON in request body...", ""},
		{"WrongType", `{"action":"compute.sandbox.runCommand","sandboxId":"` + id + `","command":"ls","args":"-l"}`, 400, "Invalid JSON in request body: field args...", ""},
		{"NoAction", map[string]any{"sandboxId": id}, 400, "Unknown action: undefined", id},
		{"UnknownAction", map[string]any{"action": "compute.sandbox.bogus", "sandboxId": id}, 400, "Unknown action: compute.sandbox.bogus", id},
		{"UnknownActionNoSandbox", map[string]any{"action": "compute.sandbox.bogus"}, 400, "sandboxId is required for this action", ""},
		{"DestroyNoID", map[string]any{"action": "compute.sandbox.destroy"}, 400, "sandboxId is required for destroy action", ""},
		{"GetInfoNoID", map[string]any{"action": "compute.sandbox.getInfo"}, 400, "sandboxId is required for this action", ""},
		{"UnknownSandbox", map[string]any{"action": "compute.sandbox.runCode", "sandboxId": "nope", "code": "print(1)"}, 404, "Sandbox nope not found", "nope"},
		{"NoCode", map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id}, 400, "code is required", id},
		{"EmptyCode", map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": ""}, 400, "code is required", id},
		{"BadRuntime", map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": "1", "runtime": "ruby"}, 400, "compute: unknown runtime...", id},
		{"SyntaxError", map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": "def (:", "runtime": "python"}, 422, "Syntax error: ...", id},
		{"NoCommand", map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id}, 400, "command is required", id},
		{"NULInArgs", map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "echo", "args": []string{"a\x00b"}}, 400, "compute: argument...", id},
		{"ReadFileNoPath", map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id}, 400, "path is required", id},
		{"WriteFileNoPath", map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "content": "x"}, 400, "path is required", id},
		{"WriteFileNoContent", map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "/tmp/x"}, 400, "content is required", id},
		{"WriteFileNullContent", `{"action":"compute.sandbox.filesystem.writeFile","sandboxId":"` + id + `","path":"/tmp/x","content":null}`, 400, "content is required", id},
		{"MkdirNoPath", map[string]any{"action": "compute.sandbox.filesystem.mkdir", "sandboxId": id, "path": ""}, 400, "path is required", id},
		{"ReaddirNoPath", map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id}, 400, "path is required", id},
		{"ExistsNoPath", map[string]any{"action": "compute.sandbox.filesystem.exists", "sandboxId": id}, 400, "path is required", id},
		{"RemoveNoPath", map[string]any{"action": "compute.sandbox.filesystem.remove", "sandboxId": id}, 400, "path is required", id},
		{"ReadMissingFile", map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "/tmp/no/such/file"}, 404, "open /tmp/no/such/file: ...", id},
		{"ReaddirMissing", map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id, "path": "/tmp/no/such/dir"}, 404, "readdir /tmp/no/such/dir: ...", id},
		{"ReaddirOfFile", map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id, "path": "/tmp/f"}, 422, "readdir /tmp/f: ...", id},
		{"MkdirOverFile", map[string]any{"action": "compute.sandbox.filesystem.mkdir", "sandboxId": id, "path": "/tmp/f"}, 409, "mkdir /tmp/f: ...", id},
		{"RemoveRoot", map[string]any{"action": "compute.sandbox.filesystem.remove", "sandboxId": id, "path": "/"}, 400, "remove /: refusing...", id},
		{"BadEncoding", map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "/tmp/f", "encoding": "latin1"}, 400, "unknown encoding...", id},
		{"BadBase64", map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "/tmp/x", "content": "!!!", "encoding": "base64"}, 400, "content is not valid base64...", id},
		{"CreateBadRuntime", map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"runtime": "ruby"}}, 400, "compute: unknown runtime...", ""},
		{"CreateNegativeTimeout", map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"timeout": -5}}, 400, "options.timeout must be...", ""},
		{"ReconnectUnknown", map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"sandboxId": "nope"}}, 404, "Sandbox nope not found", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, m := e.seed(c.body)
			checkKeys(t, "error reply", m, "success", "error", "sandboxId", "provider")
			msg, _ := m["error"].(string)
			ok := msg == c.err
			if p, found := strings.CutSuffix(c.err, "..."); found {
				ok = strings.HasPrefix(msg, p)
			}
			if code != c.status || m["success"] != false || !ok || m["provider"] != "local" || m["sandboxId"] != c.sandbox {
				t.Errorf("status %d, reply %v\nwant status %d, success false, error %q, sandboxId %q, provider local", code, m, c.status, c.err, c.sandbox)
			}
		})
	}

	t.Run("MethodNotAllowed", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			resp := e.request(method, wire.ProtocolPath, nil)
			m := decode(t, resp)
			if resp.StatusCode != 405 || m["error"] != "Only POST requests are supported" || m["success"] != false || m["sandboxId"] != "" || m["provider"] != "local" || resp.Header.Get("Allow") != "POST" {
				t.Errorf("%s %s: %d %v (Allow %q); want 405 with the seed's reply and Allow: POST", method, wire.ProtocolPath, resp.StatusCode, m, resp.Header.Get("Allow"))
			}
		}
	})
}

// TestSeedBinary moves every byte value through readFile and writeFile.
func TestSeedBinary(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	var data []byte
	for i := range 512 {
		data = append(data, byte(i))
	}
	b64 := base64.StdEncoding.EncodeToString(data)
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "bin", "content": b64, "encoding": "base64"})
	if got := e.shell(id, "od -An -tx1 bin | tr -d ' \\n' | head -c 16"); got != "0001020304050607" {
		t.Errorf("the written file starts with %q; want the bytes 00 01 02 ...", got)
	}
	m := e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "bin", "encoding": "base64"})
	if m["fileContent"] != b64 || m["encoding"] != "base64" {
		t.Errorf("readFile base64 = %v; want the same bytes back, encoding base64", m)
	}
	// Without asking: a file that is not UTF-8 comes back in base64, said
	// so, instead of mangled.
	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "bin"})
	if m["fileContent"] != b64 || m["encoding"] != "base64" {
		t.Errorf("readFile of a binary file = %v; want it in base64 with encoding base64", m)
	}
	// UTF-8 text stays text.
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "t.txt", "content": "é 日本 😀"})
	m = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "t.txt"})
	if m["fileContent"] != "é 日本 😀" || m["encoding"] != nil {
		t.Errorf("readFile of UTF-8 text = %v; want it as text, no encoding", m)
	}
}

func TestSeedCreateOptions(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	m := e.seedOK(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"runtime": "node", "timeout": 420000}})
	id := m["sandboxId"].(string)
	info := e.seedOK(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": id})["info"].(map[string]any)
	if info["runtime"] != "node" || info["timeout"] != 420000.0 {
		t.Errorf("getInfo = %v; want runtime node, timeout 420000 (from options)", info)
	}
	// The sandbox's runtime is RunCode's default.
	res := e.seedOK(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": "x = 1; console.log(x + 1)"})["result"].(map[string]any)
	if res["stdout"] != "2\n" {
		t.Errorf("runCode in a node sandbox = %v; want 2 from node", res)
	}
	// options.sandboxId reconnects to a live sandbox.
	m = e.seedOK(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"sandboxId": id}})
	if m["sandboxId"] != id || e.srv.Stats().Sandboxes != 1 {
		t.Errorf("create with options.sandboxId %s = %v, %d sandboxes; want the same sandbox, no new one", id, m, e.srv.Stats().Sandboxes)
	}
}

// TestSeedBackground starts a background command; it runs after the reply,
// can be listed and killed through v1, and ends with its sandbox.
func TestSeedBackground(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	m := e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", "sleep 0.5; echo done > bg.txt; sleep 60.424242"}, "commandOptions": map[string]any{"background": true}})
	res := m["result"].(map[string]any)
	pid, _ := res["pid"].(float64)
	if res["isBackground"] != true || res["exitCode"] != 0.0 || pid <= 0 {
		t.Fatalf("background runCommand = %v; want isBackground, exit 0 and a pid", res)
	}
	eventually(t, 30*time.Second, "the background command writes bg.txt", func() bool {
		return e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.exists", "sandboxId": id, "path": "bg.txt"})["exists"] == true
	})
	var list wire.ProcessList
	if code := e.v1("GET", "/sandboxes/"+id+"/processes", nil, &list); code != 200 || len(list.Processes) != 1 || list.Processes[0].PID != int64(pid) || list.Processes[0].Attached {
		t.Fatalf("processes: %d %+v; want the background process, not attached", code, list)
	}
	if code := e.v1("POST", "/sandboxes/"+id+"/processes/"+strconv.FormatInt(int64(pid), 10)+"/kill", nil, nil); code != 204 {
		t.Errorf("kill: status %d; want 204", code)
	}
	eventually(t, 30*time.Second, "the killed background process leaves the list", func() bool {
		var list wire.ProcessList
		e.v1("GET", "/sandboxes/"+id+"/processes", nil, &list)
		return len(list.Processes) == 0
	})
	e.noSleep(id, "60.424242")

	// A background command of a missing program reports 127 at once.
	m = e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "no-such-command-xyz", "commandOptions": map[string]any{"background": true}})
	if res := m["result"].(map[string]any); res["exitCode"] != 127.0 || res["isBackground"] != nil {
		t.Errorf("background run of a missing command = %v; want exit 127, not background", res)
	}
}
