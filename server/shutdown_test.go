package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// agents returns the pids of the local provider's sandbox agents started
// by this process: its children, and the children of its launcher (a
// child of its own that starts agents once it has started one, see
// package local). One per live sandbox; everything inside a sandbox
// descends from its agent.
func agents(t *testing.T) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("skipped: counts processes through /proc")
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[string]string{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if fields := strings.Fields(rest); len(fields) > 1 {
			parent[filepath.Base(filepath.Dir(f))] = fields[1]
		}
	}
	cmdline := func(pid string) string {
		b, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		return string(b)
	}
	self := strconv.Itoa(os.Getpid())
	var out []string
	for pid, ppid := range parent {
		if !strings.HasPrefix(cmdline(pid), "compute-sandbox-agent") {
			continue
		}
		if ppid == self || (parent[ppid] == self && strings.HasPrefix(cmdline(ppid), "compute-sandbox-launcher")) {
			out = append(out, pid)
		}
	}
	return out
}

// TestShutdown runs alone (not parallel), so that it can count the test
// process's sandbox agents: none may be left.
func TestShutdown(t *testing.T) {
	before := agents(t)
	p := newLocal(t)
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	e := &env{t: t, p: p, srv: srv, ts: ts, logs: &logBuffer{}}

	a := e.create()
	var info wire.SandboxInfo
	e.v1("POST", "/sandboxes", wire.CreateRequest{}, &info)
	b := info.ID
	e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": a, "command": "sleep", "args": []string{"60.919191"}, "commandOptions": map[string]any{"background": true}})
	stream := e.exec(b, wire.ExecRequest{Argv: []string{"sh", "-c", "sleep 60.929292 & sleep 60.929292"}})
	if n := len(agents(t)); n < len(before)+2 {
		t.Fatalf("%d sandbox agents with two sandboxes; want at least %d", n, len(before)+2)
	}

	// A request that finishes within the grace period.
	finished := make(chan string, 1)
	go func() {
		code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": a, "command": "sh", "args": []string{"-c", "sleep 1; echo finished"}})
		res, _ := m["result"].(map[string]any)
		finished <- fmt.Sprint(code, " ", res["stdout"])
	}()
	eventually(t, 30*time.Second, "two requests in flight", func() bool { return srv.Stats().Requests == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cancelled 1 requests") {
		t.Errorf("Shutdown = %v; want it to say it cancelled the one request (the stream) still running at the deadline", err)
	}
	if got := <-finished; got != "200 finished\n" {
		t.Errorf("the request in flight got %q; want it finished normally (200)", got)
	}
	// The stream ends with an error event (or is cut).
	var last wire.Event
	for {
		var ev wire.Event
		if err := stream.dec.Decode(&ev); err != nil {
			break
		}
		last = ev
	}
	if last.Type == wire.EventExit {
		t.Errorf("the cancelled stream ended with %+v; want an error event or a cut stream", last)
	}

	if list, _ := p.List(t.Context()); len(list) != 0 {
		t.Errorf("the provider has %d sandboxes after Shutdown; want 0", len(list))
	}
	if st := srv.Stats(); st != (server.Stats{}) {
		t.Errorf("Stats after Shutdown = %+v; want all zero", st)
	}
	// The provider may keep spare sandboxes started ahead of demand, which
	// it alone owns: close it, then not one agent may be left.
	p.Close()
	eventually(t, 10*time.Second, "no sandbox agent left", func() bool { return len(agents(t)) <= len(before) })

	// Refused from now on.
	resp := e.request("POST", wire.ProtocolPath, jsonBody(map[string]any{"action": "compute.sandbox.list"}))
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || m["success"] != false || m["error"] != "the server is shutting down" {
		t.Errorf("a request after Shutdown: %d %v; want 503", resp.StatusCode, m)
	}
	resp = e.request("GET", wire.HealthPath, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health after Shutdown: %d; want 503", resp.StatusCode)
	}
	// Later calls return the first's result.
	if err2 := srv.Shutdown(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Shutdown = %v; want the first's %v", err2, err)
	}
}

func TestShutdownIdle(t *testing.T) {
	before := agents(t)
	p := newLocal(t)
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	e := &env{t: t, p: p, srv: srv, ts: ts, logs: &logBuffer{}}
	for range 3 {
		e.create()
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close with nothing in flight = %v; want nil", err)
	}
	if list, _ := p.List(t.Context()); len(list) != 0 {
		t.Errorf("the provider has %d sandboxes after Close; want 0", len(list))
	}
	p.Close() // its spare sandboxes, if any
	eventually(t, 10*time.Second, "no sandbox agent left", func() bool { return len(agents(t)) <= len(before) })
}
