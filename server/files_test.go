package server_test

import (
	"bytes"
	crand "crypto/rand"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

func filesPath(id, endpoint, path string) string {
	return wire.V1Path + "/sandboxes/" + id + "/" + endpoint + "?" + url.Values{"path": {path}}.Encode()
}

func TestFiles(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()

	t.Run("UploadDownloadStreamed", func(t *testing.T) {
		data := make([]byte, 10<<20)
		crand.Read(data)
		// A body of unknown length, written while it is sent.
		pr, pw := io.Pipe()
		go func() {
			for b := data; len(b) > 0; b = b[min(len(b), 100_000):] {
				pw.Write(b[:min(len(b), 100_000)])
			}
			pw.Close()
		}()
		resp := e.request("PUT", filesPath(id, "files", "/tmp/up/big.bin"), pr)
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("upload: status %d; want 204", resp.StatusCode)
		}
		resp = e.request("GET", filesPath(id, "files", "/tmp/up/big.bin"), nil)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil || !bytes.Equal(got, data) || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("download: status %d, %d bytes, equal %v, %v, Content-Type %q; want 200 and the 10 MiB uploaded", resp.StatusCode, len(got), bytes.Equal(got, data), err, resp.Header.Get("Content-Type"))
		}
		if sum := e.shell(id, "wc -c < /tmp/up/big.bin"); strings.TrimSpace(sum) != "10485760" {
			t.Errorf("wc -c in the sandbox = %q; want 10485760", sum)
		}
	})

	t.Run("OddNames", func(t *testing.T) {
		for _, name := range []string{"with space.txt", "q'\"$x`y`&a=b?c#d%20.txt", "ünï 日本.txt", "new\nline.txt", "-dash"} {
			resp := e.request("PUT", filesPath(id, "files", "odd/"+name), strings.NewReader("content of "+name))
			resp.Body.Close()
			resp = e.request("GET", filesPath(id, "files", "odd/"+name), nil)
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != "content of "+name {
				t.Errorf("round trip of %q: %q; want %q", name, got, "content of "+name)
			}
		}
	})

	t.Run("StatDirMkdirRemove", func(t *testing.T) {
		if code := e.v1("POST", strings.TrimPrefix(filesPath(id, "dir", "/tmp/fs/a/b"), wire.V1Path), nil, nil); code != 204 {
			t.Fatalf("mkdir: status %d; want 204", code)
		}
		resp := e.request("PUT", filesPath(id, "files", "/tmp/fs/a/f.txt"), strings.NewReader("12345"))
		resp.Body.Close()
		var fi wire.FileInfo
		if code := e.v1("GET", strings.TrimPrefix(filesPath(id, "stat", "/tmp/fs/a/f.txt"), wire.V1Path), nil, &fi); code != 200 || fi.Name != "f.txt" || fi.Path != "/tmp/fs/a/f.txt" || fi.Size != 5 || fi.IsDir || fi.Mode&0o400 == 0 || fi.ModTime.IsZero() {
			t.Errorf("stat: %d %+v; want f.txt, 5 bytes, a file", code, fi)
		}
		var list wire.DirList
		if code := e.v1("GET", strings.TrimPrefix(filesPath(id, "dir", "/tmp/fs/a"), wire.V1Path), nil, &list); code != 200 || len(list.Files) != 2 || list.Files[0].Name != "b" || !list.Files[0].IsDir || list.Files[1].Name != "f.txt" {
			t.Errorf("readdir: %d %+v; want b (dir), f.txt", code, list)
		}
		if code := e.v1("DELETE", strings.TrimPrefix(filesPath(id, "files", "/tmp/fs/a"), wire.V1Path), nil, nil); code != 204 {
			t.Errorf("remove: status %d; want 204", code)
		}
		e.v1Err("GET", strings.TrimPrefix(filesPath(id, "stat", "/tmp/fs/a"), wire.V1Path), nil, 404, wire.CodeNotExist)
		// Removing what is not there is no error.
		if code := e.v1("DELETE", strings.TrimPrefix(filesPath(id, "files", "/tmp/fs/a"), wire.V1Path), nil, nil); code != 204 {
			t.Errorf("remove of a missing path: status %d; want 204", code)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		rel := func(endpoint, path string) string {
			return strings.TrimPrefix(filesPath(id, endpoint, path), wire.V1Path)
		}
		e.shell(id, "mkdir -p /tmp/err/dir && echo x > /tmp/err/file")
		er := e.v1Err("GET", rel("files", "/tmp/err/missing"), nil, 404, wire.CodeNotExist)
		if er.Reason == "" || !strings.Contains(er.Error, "/tmp/err/missing") {
			t.Errorf("download of a missing file: %+v; want the path in the error and a reason", er)
		}
		e.v1Err("GET", rel("files", "/tmp/err/dir"), nil, 422, wire.CodeFileError)
		e.v1Err("GET", rel("dir", "/tmp/err/file"), nil, 422, wire.CodeFileError)
		e.v1Err("GET", rel("dir", "/tmp/err/missing"), nil, 404, wire.CodeNotExist)
		e.v1Err("POST", rel("dir", "/tmp/err/file"), nil, 409, wire.CodeExist)
		e.v1Err("DELETE", rel("files", "/"), nil, 400, wire.CodeBadRequest)
		e.v1Err("GET", "/sandboxes/"+id+"/files", nil, 400, wire.CodeBadRequest)
		e.v1Err("GET", "/sandboxes/"+id+"/stat?path=", nil, 400, wire.CodeBadRequest)
		e.v1Err("GET", "/sandboxes/nope/stat?path=/tmp", nil, 404, wire.CodeSandboxNotFound)
		e.v1Err("PATCH", rel("files", "/tmp/x"), nil, 405, wire.CodeMethodNotAllowed)

		resp := e.request("PUT", filesPath(id, "files", "/tmp/err/dir"), strings.NewReader("x"))
		m := decode(t, resp)
		if resp.StatusCode/100 != 4 || m["code"] == nil {
			t.Errorf("upload over a directory: %d %v; want a 4xx error", resp.StatusCode, m)
		}
		if got := e.shell(id, "test -d /tmp/err/dir && echo still a dir"); got != "still a dir\n" {
			t.Errorf("after a refused upload over a directory: %q", got)
		}
	})

	t.Run("UnknownEndpoint", func(t *testing.T) {
		e.v1Err("GET", "/nothing/here", nil, 404, wire.CodeNotFound)
		resp := e.request("DELETE", wire.V1Path+"/sandboxes", nil)
		m := decode(t, resp)
		if resp.StatusCode != 405 || m["code"] != wire.CodeMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("DELETE /sandboxes: %d %v Allow %q; want 405 with Allow", resp.StatusCode, m, resp.Header.Get("Allow"))
		}
	})
}

func TestV1Sandboxes(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	var info wire.SandboxInfo
	code := e.v1("POST", "/sandboxes", wire.CreateRequest{Runtime: "node", Timeout: 420000, Name: "n", Metadata: map[string]string{"k": "v"}, Env: map[string]string{"E": "1"}, Dir: "/tmp"}, &info)
	if code != 201 || info.ID == "" || info.Provider != "local" || info.Runtime != "node" || info.Timeout != 420000 || info.Name != "n" || info.Metadata["k"] != "v" || info.Status != "running" || info.CreatedAt.IsZero() {
		t.Fatalf("create: %d %+v; want 201 and the sandbox as asked", code, info)
	}
	if got := e.shell(info.ID, `echo "$E $(pwd)"`); got != "1 /tmp\n" {
		t.Errorf("env and dir of the created sandbox: %q; want %q", got, "1 /tmp\n")
	}
	var again wire.SandboxInfo
	if code := e.v1("GET", "/sandboxes/"+info.ID, nil, &again); code != 200 || again.ID != info.ID || !again.CreatedAt.Equal(info.CreatedAt) {
		t.Errorf("get: %d %+v; want the same sandbox", code, again)
	}
	var list wire.SandboxList
	if code := e.v1("GET", "/sandboxes", nil, &list); code != 200 || len(list.Sandboxes) != 1 || list.Sandboxes[0].ID != info.ID {
		t.Errorf("list: %d %+v; want the one sandbox", code, list)
	}
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Runtime: "ruby"}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Network: "bridge"}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Timeout: -1}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Env: map[string]string{"": "x"}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", `{"timeout": "soon"}`, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{NetworkAllow: []string{"example.com"}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{NetworkAllow: []string{"example.com:0"}}, 400, wire.CodeBadRequest)
	// Network access is the operator's to give.
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Network: "host"}, 403, wire.CodeForbidden)
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{NetworkAllow: []string{"example.com:443"}}, 403, wire.CodeForbidden)

	if code := e.v1("DELETE", "/sandboxes/"+info.ID, nil, nil); code != 204 {
		t.Errorf("destroy: status %d; want 204", code)
	}
	e.v1Err("GET", "/sandboxes/"+info.ID, nil, 404, wire.CodeSandboxNotFound)
	if code := e.v1("DELETE", "/sandboxes/"+info.ID, nil, nil); code != 204 {
		t.Errorf("second destroy: status %d; want 204", code)
	}
	if code := e.v1("GET", "/sandboxes", nil, &list); code != 200 || list.Sandboxes == nil || len(list.Sandboxes) != 0 {
		t.Errorf("list after destroy: %d %+v; want an empty list", code, list)
	}
}

// TestOnlyOwnSandboxes checks that a server does not reach sandboxes of
// its provider that it did not create.
func TestOnlyOwnSandboxes(t *testing.T) {
	t.Parallel()
	p := newLocal(t)
	other, err := p.Create(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, p, server.Options{})
	code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": other.ID(), "command": "true"})
	if code != http.StatusNotFound {
		t.Errorf("runCommand in a sandbox the server did not create: %d %v; want 404", code, m)
	}
	if m := e.seedOK(map[string]any{"action": "compute.sandbox.list"}); len(m["sandboxes"].([]any)) != 0 {
		t.Errorf("list = %v; want none of the provider's other sandboxes", m["sandboxes"])
	}
	e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": other.ID()})
	if _, err := p.Get(t.Context(), other.ID()); err != nil {
		t.Errorf("a destroy through the server destroyed a sandbox it did not create: %v", err)
	}
}
