package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// needPython skips a test where the sandboxes have no python3.
func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("skipped: no python3 for a code context")
	}
}

func ctxPath(sb, cc string) string { return "/sandboxes/" + sb + "/contexts/" + cc }

// newContext creates a code context and returns its info.
func (e *env) newContext(sb string, req wire.CreateContextRequest) wire.ContextInfo {
	e.t.Helper()
	var info wire.ContextInfo
	if code := e.v1("POST", "/sandboxes/"+sb+"/contexts", req, &info); code != http.StatusCreated || info.ID == "" {
		e.t.Fatalf("create context: %d, %+v; want 201 and an id", code, info)
	}
	return info
}

// cellReply is a cell's stream, read to its end.
type cellReply struct {
	events []wire.CellEvent
	stdout string
	stderr string
}

func (c *cellReply) last() wire.CellEvent { return c.events[len(c.events)-1] }

// types lists the types of the events, a run of stdout (or stderr)
// events as one: how output is cut into chunks is the interpreter's.
func (c *cellReply) types() string {
	var t []string
	for _, ev := range c.events {
		if n := len(t); n > 0 && t[n-1] == ev.Type && (ev.Type == wire.CellEventStdout || ev.Type == wire.CellEventStderr) {
			continue
		}
		t = append(t, ev.Type)
	}
	return strings.Join(t, ",")
}

// event returns the first event of a type.
func (c *cellReply) event(typ string) wire.CellEvent {
	for _, ev := range c.events {
		if ev.Type == typ {
			return ev
		}
	}
	return wire.CellEvent{}
}

func (c *cellReply) main() string {
	for _, ev := range c.events {
		if ev.Type == wire.CellEventResult && ev.Main && ev.Bundle != nil {
			return ev.Bundle.Text
		}
	}
	return ""
}

// openCell starts a cell and returns its response, which must be a
// stream.
func (e *env) openCell(ctx context.Context, sb, cc string, req wire.RunCellRequest) *http.Response {
	e.t.Helper()
	b, _ := json.Marshal(req)
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+wire.V1Path+ctxPath(sb, cc)+"/run", bytes.NewReader(b))
	if e.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.ts.Client().Do(hreq)
	if err != nil {
		e.t.Fatalf("run %q: %v", req.Code, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.t.Fatalf("run %q: status %d, Content-Type %q, body %s; want 200 and an NDJSON stream", req.Code, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp
}

// cell runs a cell and reads its stream to the end.
func (e *env) cell(sb, cc string, req wire.RunCellRequest) *cellReply {
	e.t.Helper()
	resp := e.openCell(e.t.Context(), sb, cc, req)
	defer resp.Body.Close()
	out := &cellReply{}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev wire.CellEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			e.t.Fatalf("run %q: reading the stream: %v", req.Code, err)
		}
		switch ev.Type {
		case wire.CellEventStdout:
			out.stdout += string(ev.Data)
		case wire.CellEventStderr:
			out.stderr += string(ev.Data)
		}
		out.events = append(out.events, ev)
	}
	if len(out.events) == 0 {
		e.t.Fatalf("run %q: an empty stream", req.Code)
	}
	if typ := out.last().Type; typ != wire.CellEventEnd && typ != wire.CellEventFailure {
		e.t.Fatalf("run %q: the stream ends with %q (%s); want end or failure", req.Code, typ, out.types())
	}
	return out
}

// TestContexts checks the code context endpoints of one sandbox: create,
// list, info, cells and their events in order, restart, close.
func TestContexts(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{})
	sb := e.create()

	a := e.newContext(sb, wire.CreateContextRequest{Runtime: "python", Env: map[string]string{"CTX_VAR": "v"}})
	if a.Runtime != "python" || !strings.HasPrefix(a.Version, "3.") || a.CreatedAt.IsZero() {
		t.Errorf("context info %+v; want python, a 3.x version, a creation time", a)
	}
	b := e.newContext(sb, wire.CreateContextRequest{})
	var list wire.ContextList
	if code := e.v1("GET", "/sandboxes/"+sb+"/contexts", nil, &list); code != 200 || len(list.Contexts) != 2 || list.Contexts[0].ID != a.ID || list.Contexts[1].ID != b.ID {
		t.Errorf("list: %d, %+v; want [%s %s], oldest first", code, list, a.ID, b.ID)
	}
	var info wire.ContextInfo
	if code := e.v1("GET", ctxPath(sb, a.ID), nil, &info); code != 200 || info != a {
		t.Errorf("GET context: %d, %+v; want 200, %+v", code, info, a)
	}

	e.cell(sb, a.ID, wire.RunCellRequest{Code: "x = 41"})
	r := e.cell(sb, a.ID, wire.RunCellRequest{Code: "import os, sys\nprint('hi', flush=True)\nsys.stdout.buffer.write(b'\\xff\\x00'); sys.stdout.flush()\nprint(os.environ['CTX_VAR'])\nx + 1"})
	if got := r.types(); got != "stdout,result,end" {
		t.Errorf("events %s; want stdout,result,end", got)
	}
	if r.stdout != "hi\n\xff\x00v\n" || r.main() != "42" || r.last().Truncated {
		t.Errorf("stdout %q, main %q, end %+v; want the raw bytes, 42, not truncated", r.stdout, r.main(), r.last())
	}
	r = e.cell(sb, a.ID, wire.RunCellRequest{Code: "import sys\nsys.stderr.write('warn\\n')\nNone"})
	if got := r.types(); got != "stderr,end" || r.stderr != "warn\n" {
		t.Errorf("events %s, stderr %q; want stderr,end and %q", got, r.stderr, "warn\n")
	}

	// An exception: an error event, then end.
	r = e.cell(sb, a.ID, wire.RunCellRequest{Code: "print('partial')\n1 / 0"})
	if got := r.types(); got != "stdout,error,end" {
		t.Errorf("a raising cell: events %s; want stdout,error,end", got)
	}
	if ev := r.event(wire.CellEventError); ev.Name != "ZeroDivisionError" || !strings.Contains(ev.Traceback, "ZeroDivisionError") {
		t.Errorf("error event %+v; want ZeroDivisionError with its traceback", ev)
	}
	// The other context has its own variables.
	if r := e.cell(sb, b.ID, wire.RunCellRequest{Code: "x"}); r.event(wire.CellEventError).Name != "NameError" {
		t.Errorf("x in the other context: %s %+v; want a NameError", r.types(), r.events)
	}

	// The interpreter dying: a failure event with context_died, until a
	// restart.
	r = e.cell(sb, a.ID, wire.RunCellRequest{Code: "import os\nos._exit(3)"})
	if ev := r.last(); ev.Type != wire.CellEventFailure || ev.Code != wire.CodeContextDied || ev.Error == "" {
		t.Errorf("a cell that exits the interpreter: %+v; want a failure event, code %s", ev, wire.CodeContextDied)
	}
	if code := e.v1("POST", ctxPath(sb, a.ID)+"/restart", nil, &info); code != 200 || info.ID != a.ID {
		t.Errorf("restart: %d, %+v; want 200 and the same id", code, info)
	}
	if r := e.cell(sb, a.ID, wire.RunCellRequest{Code: "x"}); r.event(wire.CellEventError).Name != "NameError" {
		t.Errorf("x after restart: %s; want a NameError (state gone)", r.types())
	}

	if code := e.v1("DELETE", ctxPath(sb, a.ID), nil, nil); code != http.StatusNoContent {
		t.Errorf("DELETE context: %d; want 204", code)
	}
	e.v1Err("DELETE", ctxPath(sb, a.ID), nil, 404, wire.CodeContextNotFound)
	e.v1Err("GET", ctxPath(sb, a.ID), nil, 404, wire.CodeContextNotFound)
	e.v1Err("POST", ctxPath(sb, a.ID)+"/restart", nil, 404, wire.CodeContextNotFound)
	e.v1Err("POST", ctxPath(sb, a.ID)+"/run", wire.RunCellRequest{Code: "1"}, 404, wire.CodeContextNotFound)
	if code := e.v1("GET", "/sandboxes/"+sb+"/contexts", nil, &list); code != 200 || len(list.Contexts) != 1 || list.Contexts[0].ID != b.ID {
		t.Errorf("list after close: %d, %+v; want only %s", code, list, b.ID)
	}

	// Destroying the sandbox takes its contexts with it.
	if code := e.v1("DELETE", "/sandboxes/"+sb, nil, nil); code != http.StatusNoContent {
		t.Fatalf("destroy: %d", code)
	}
	e.v1Err("GET", "/sandboxes/"+sb+"/contexts", nil, 404, wire.CodeSandboxNotFound)
	e.v1Err("POST", ctxPath(sb, b.ID)+"/run", wire.RunCellRequest{Code: "1"}, 404, wire.CodeSandboxNotFound)
}

// TestContextTimeout checks that a cell past its timeout ends with a
// failure event (code timeout) after its partial output, and that the
// context keeps its state.
func TestContextTimeout(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{})
	sb := e.create()
	cc := e.newContext(sb, wire.CreateContextRequest{})
	e.cell(sb, cc.ID, wire.RunCellRequest{Code: "kept = 5"})
	start := time.Now()
	r := e.cell(sb, cc.ID, wire.RunCellRequest{Code: "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", Timeout: 500})
	if ev := r.last(); ev.Type != wire.CellEventFailure || ev.Code != wire.CodeTimeout {
		t.Errorf("a cell past its timeout ends with %+v; want a failure event, code timeout", ev)
	}
	if r.stdout != "sleeping\n" {
		t.Errorf("partial stdout %q; want %q", r.stdout, "sleeping\n")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the timed-out cell took %v", d)
	}
	if r := e.cell(sb, cc.ID, wire.RunCellRequest{Code: "kept"}); r.main() != "5" {
		t.Errorf("kept after the timeout = %q (%s); want 5", r.main(), r.types())
	}
}

// TestContextDisconnect checks that a client going away interrupts its
// cell, and that the context keeps its state.
func TestContextDisconnect(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{})
	sb := e.create()
	cc := e.newContext(sb, wire.CreateContextRequest{})
	e.cell(sb, cc.ID, wire.RunCellRequest{Code: "kept = 6"})
	ctx, cancel := context.WithCancel(t.Context())
	resp := e.openCell(ctx, sb, cc.ID, wire.RunCellRequest{Code: "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"})
	var ev wire.CellEvent
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil || ev.Type != wire.CellEventStdout {
		t.Fatalf("first event %+v, %v; want stdout", ev, err)
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	if r := e.cell(sb, cc.ID, wire.RunCellRequest{Code: "kept"}); r.main() != "6" {
		t.Errorf("kept after the disconnect = %q (%s); want 6", r.main(), r.types())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the next cell waited %v: the abandoned one was not interrupted", d)
	}
}

// TestContextLargeResult checks that an output larger than a reply may
// be is left out, and the end event says truncated.
func TestContextLargeResult(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{MaxOutputBytes: 1000})
	sb := e.create()
	cc := e.newContext(sb, wire.CreateContextRequest{})
	r := e.cell(sb, cc.ID, wire.RunCellRequest{Code: "print('y' * 5000)\n'x' * 5000"})
	if got := r.types(); got != "stdout,end" || !r.last().Truncated || len(r.stdout) != 5001 {
		t.Errorf("events %s, end %+v, %d bytes of stdout; want stdout (all 5001 bytes: streams are not capped), end truncated", got, r.last(), len(r.stdout))
	}
}

// TestContextsBadInput checks the 400s and 404s before any stream.
func TestContextsBadInput(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{})
	sb := e.create()
	e.v1Err("POST", "/sandboxes/"+sb+"/contexts", wire.CreateContextRequest{Runtime: "ruby"}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes/"+sb+"/contexts", wire.CreateContextRequest{Env: map[string]string{"A=B": "x"}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes/"+sb+"/contexts", `{"runtime": 3}`, 400, wire.CodeBadRequest)
	e.v1Err("POST", "/sandboxes/lsb-nosuchsandbox0000/contexts", wire.CreateContextRequest{}, 404, wire.CodeSandboxNotFound)
	e.v1Err("GET", "/sandboxes/lsb-nosuchsandbox0000/contexts", nil, 404, wire.CodeSandboxNotFound)
	cc := e.newContext(sb, wire.CreateContextRequest{})
	run := ctxPath(sb, cc.ID) + "/run"
	e.v1Err("POST", run, `{"code": "1", "timeout": -1}`, 400, wire.CodeBadRequest)
	e.v1Err("POST", run, wire.RunCellRequest{Code: "1\x00"}, 400, wire.CodeBadRequest)
	e.v1Err("POST", run, `not json`, 400, wire.CodeBadRequest)
	e.v1Err("POST", ctxPath(sb, "ctx-nosuchcontext")+"/run", wire.RunCellRequest{Code: "1"}, 404, wire.CodeContextNotFound)
	e.v1Err("GET", ctxPath(sb, "ctx-nosuchcontext"), nil, 404, wire.CodeContextNotFound)
	e.v1Err("PUT", ctxPath(sb, cc.ID), nil, 405, wire.CodeMethodNotAllowed)
	// The context is still fine.
	if r := e.cell(sb, cc.ID, wire.RunCellRequest{Code: "1 + 1"}); r.main() != "2" {
		t.Errorf("1 + 1 = %q (%s); want 2", r.main(), r.types())
	}
}

// TestContextsTenants checks that another tenant can neither see nor use
// a tenant's contexts: its sandbox is unknown to them.
func TestContextsTenants(t *testing.T) {
	t.Parallel()
	needPython(t)
	e := start(t, nil, server.Options{Tokens: map[string]string{aliceToken: "alice", bobToken: "bob", adminToken: server.AdminTenant}})
	alice, bob, admin := e.as(aliceToken), e.as(bobToken), e.as(adminToken)
	sb := alice.create()
	cc := alice.newContext(sb, wire.CreateContextRequest{})
	alice.cell(sb, cc.ID, wire.RunCellRequest{Code: "secret = 7"})

	bob.v1Err("GET", "/sandboxes/"+sb+"/contexts", nil, 404, wire.CodeSandboxNotFound)
	bob.v1Err("POST", "/sandboxes/"+sb+"/contexts", wire.CreateContextRequest{}, 404, wire.CodeSandboxNotFound)
	bob.v1Err("GET", ctxPath(sb, cc.ID), nil, 404, wire.CodeSandboxNotFound)
	bob.v1Err("POST", ctxPath(sb, cc.ID)+"/run", wire.RunCellRequest{Code: "secret"}, 404, wire.CodeSandboxNotFound)
	bob.v1Err("POST", ctxPath(sb, cc.ID)+"/restart", nil, 404, wire.CodeSandboxNotFound)
	bob.v1Err("DELETE", ctxPath(sb, cc.ID), nil, 404, wire.CodeSandboxNotFound)
	e.as("").v1Err("GET", "/sandboxes/"+sb+"/contexts", nil, 401, wire.CodeUnauthorized)

	if r := alice.cell(sb, cc.ID, wire.RunCellRequest{Code: "secret"}); r.main() != "7" {
		t.Errorf("alice's secret after bob's tries = %q (%s); want 7", r.main(), r.types())
	}
	var list wire.ContextList
	if code := admin.v1("GET", "/sandboxes/"+sb+"/contexts", nil, &list); code != 200 || len(list.Contexts) != 1 {
		t.Errorf("the admin lists %d, %+v; want alice's context", code, list)
	}
}
