//go:build linux

package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// run runs the fs-tools mode with one JSON command.
func run(t *testing.T, cmd any, stdin string) (stdout string, kind string, code int) {
	t.Helper()
	b, _ := json.Marshal(cmd)
	var out, errb bytes.Buffer
	code = Main(ModeFSTools, []string{string(b)}, strings.NewReader(stdin), &out, &errb)
	if code != 0 {
		var p struct {
			Version int    `json:"version"`
			Kind    string `json:"error_kind"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(errb.Bytes(), &p); err != nil || p.Version != 1 || p.Message == "" {
			t.Fatalf("stderr %q is not an error payload", errb.String())
		}
		kind = p.Kind
	}
	return out.String(), kind, code
}

func TestFSToolsErrorKinds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("data"), 0o644)
	os.Mkdir(filepath.Join(dir, "full"), 0o755)
	os.WriteFile(filepath.Join(dir, "full", "x"), nil, 0o644)
	missing := filepath.Join(dir, "missing")

	type m = map[string]any
	for _, tc := range []struct {
		name string
		cmd  any
		kind string
	}{
		{"read missing", m{"ReadFile": m{"path": missing}}, "NotFound"},
		{"read directory", m{"ReadFile": m{"path": dir}}, "IsDirectory"},
		{"write over directory", m{"WriteFile": m{"path": dir}}, "IsDirectory"},
		{"write under file", m{"WriteFile": m{"path": file + "/x"}}, "AlreadyExists"},
		{"write two under file", m{"WriteFile": m{"path": file + "/x/y"}}, "NotDirectory"},
		{"list missing", m{"ListFiles": m{"path": missing}}, "NotFound"},
		{"list file", m{"ListFiles": m{"path": file}}, "IsFile"},
		{"list under file", m{"ListFiles": m{"path": file + "/x"}}, "NotDirectory"},
		{"mkdir over file", m{"MakeDirectory": m{"path": file, "parents": true}}, "PathAlreadyExists"},
		{"mkdir existing strict", m{"MakeDirectory": m{"path": dir, "parents": false}}, "PathAlreadyExists"},
		{"mkdir no parent strict", m{"MakeDirectory": m{"path": missing + "/x", "parents": false}}, "NotFound"},
		{"mkdir under file", m{"MakeDirectory": m{"path": file + "/x"}}, "NotDirectory"},
		{"remove missing", m{"Remove": m{"path": missing, "recursive": false}}, "NotFound"},
		{"remove non-empty", m{"Remove": m{"path": filepath.Join(dir, "full"), "recursive": false}}, "DirectoryNotEmpty"},
		{"stat missing", m{"Stat": m{"path": missing}}, "NotFound"},
		{"stat under file", m{"Stat": m{"path": file + "/x"}}, "NotDirectory"},
		{"watch missing", m{"Watch": m{"path": missing, "recursive": false, "filter": nil, "timeout_secs": 0}}, "NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, kind, code := run(t, tc.cmd, "")
			if code != 1 || kind != tc.kind {
				t.Errorf("exit %d, error_kind %q; want 1, %q", code, kind, tc.kind)
			}
		})
	}
}

func TestFSToolsReadWriteListStat(t *testing.T) {
	dir := t.TempDir()
	type m = map[string]any
	p := filepath.Join(dir, "a", "b.txt")
	if _, _, code := run(t, m{"WriteFile": m{"path": p}}, "hello"); code != 0 {
		t.Fatal("write failed")
	}
	if out, _, _ := run(t, m{"ReadFile": m{"path": p}}, ""); out != "hello" {
		t.Errorf("read %q", out)
	}
	os.Symlink("a/b.txt", filepath.Join(dir, "link"))
	out, _, _ := run(t, m{"ListFiles": m{"path": dir}}, "")
	var list []fileEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a" || list[0].Type != "directory" || list[1].Type != "symlink" ||
		list[1].SymlinkTarget == nil || *list[1].SymlinkTarget != "a/b.txt" || list[1].Path != filepath.Join(dir, "link") {
		t.Errorf("list = %+v", list)
	}
	out, _, _ = run(t, m{"Stat": m{"path": p}}, "")
	var e fileEntry
	json.Unmarshal([]byte(out), &e)
	if e.Name != "b.txt" || e.Size != 5 || e.Mode != 0o100644 || e.Permissions != "0644" || e.ModifiedTime == 0 {
		t.Errorf("stat = %+v", e)
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if out, _, _ := run(t, m{"ListFiles": m{"path": empty}}, ""); out != "[]" {
		t.Errorf("list of an empty directory = %q, want []", out)
	}
	if _, _, code := run(t, m{"Remove": m{"path": filepath.Join(dir, "a"), "recursive": true}}, ""); code != 0 {
		t.Error("recursive remove failed")
	}
	if _, err := os.Lstat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Error("the directory is still there")
	}
}

func TestFSToolsReadLimit(t *testing.T) {
	t.Setenv(maxReadFileSizeEnv, "3")
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("four"), 0o644)
	if _, kind, _ := run(t, map[string]any{"ReadFile": map[string]any{"path": p}}, ""); kind != "FileTooLarge" {
		t.Errorf("kind %q, want FileTooLarge", kind)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "mod"), []byte("x"), 0o644)
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	b, _ := json.Marshal(map[string]any{"Watch": map[string]any{"path": dir, "recursive": false, "filter": nil, "timeout_secs": 120}})
	done := make(chan int)
	go func() {
		done <- Main(ModeFSTools, []string{string(b)}, stdinR, outW, io.Discard)
		outW.Close()
	}()
	type event struct {
		EventType string   `json:"event_type"`
		Paths     []string `json:"paths"`
	}
	events := make(chan event)
	go func() {
		defer close(events)
		dec := json.NewDecoder(outR)
		for {
			var ev event
			if dec.Decode(&ev) != nil {
				return
			}
			events <- ev
		}
	}()
	next := func() event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the watcher stopped")
			}
			return ev
		case <-time.After(2 * time.Minute): // a correctness bound, so a broken watcher fails instead of hanging
			t.Fatal("no event from the watcher")
		}
		return event{}
	}

	// Wait until the watcher has its baseline (a loaded machine may start it
	// late): create probe files until one is reported.
	probed := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-probed:
				return
			case <-time.After(watchInterval):
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("probe-%d", i)), nil, 0o644)
			}
		}
	}()
	for ev := next(); ev.EventType != "Create" || !strings.Contains(strings.Join(ev.Paths, " "), "probe-"); ev = next() {
	}
	close(probed)

	os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644)
	os.Rename(filepath.Join(dir, "old"), filepath.Join(dir, "renamed"))
	os.WriteFile(filepath.Join(dir, "mod"), []byte("longer"), 0o644)
	want := map[string]string{"Create": dir + "/new", "Rename": dir + "/old " + dir + "/renamed", "Modify": dir + "/mod"}
	for len(want) > 0 {
		ev := next()
		if want[ev.EventType] == strings.Join(ev.Paths, " ") {
			delete(want, ev.EventType)
		}
	}
	stdinW.Close() // closing stdin stops the watcher
	go func() {
		for range events {
		}
	}()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestSnapshotTreeRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d", "e"), 0o750)
	os.WriteFile(filepath.Join(src, "d", "e", "f"), []byte("content"), 0o600)
	os.Symlink("d/e/f", filepath.Join(src, "l"))
	var tarball, errb bytes.Buffer
	if code := Main(ModeSnapshot, []string{src}, nil, &tarball, &errb); code != 0 {
		t.Fatalf("snapshot: %s", errb.String())
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if code := Main(ModeRestore, []string{dst}, &tarball, io.Discard, &errb); code != 0 {
		t.Fatalf("restore: %s", errb.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "l")); string(b) != "content" {
		t.Errorf("through the restored symlink: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "d", "e", "f")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored mode: %v", fi)
	}
}

func TestConnectAndProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo until the client half-closes
		c.Close()
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	var out bytes.Buffer
	if code := Main(ModeConnect, []string{port}, strings.NewReader("ping"), &out, io.Discard); code != 0 || out.String() != "ping" {
		t.Errorf("connect: exit %d, %q", code, out.String())
	}
	if code := Main(ModeProbe, []string{port}, nil, nil, io.Discard); code != 0 {
		t.Errorf("probe of a listening port: %d", code)
	}
	l.Close()
	if code := Main(ModeProbe, []string{port}, nil, nil, io.Discard); code != 1 {
		t.Errorf("probe of a closed port: %d", code)
	}
}
