package server_test

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// execStream is an open exec stream, read event by event.
type execStream struct {
	t      *testing.T
	resp   *http.Response
	dec    *json.Decoder
	cancel context.CancelFunc
	pid    int64
}

// exec starts a command and reads the stream's start event.
func (e *env) exec(id string, req wire.ExecRequest) *execStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.t.Context())
	b, _ := json.Marshal(req)
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+wire.V1Path+"/sandboxes/"+id+"/exec", bytes.NewReader(b))
	if e.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.ts.Client().Do(hreq)
	if err != nil {
		cancel()
		e.t.Fatalf("exec %q: %v", req.Argv, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		e.t.Fatalf("exec %q: status %d, Content-Type %q, body %s; want 200 and an NDJSON stream", req.Argv, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &execStream{t: e.t, resp: resp, dec: json.NewDecoder(resp.Body), cancel: cancel}
	e.t.Cleanup(s.close)
	ev := s.next()
	if ev.Type != wire.EventStart || ev.PID <= 0 {
		e.t.Fatalf("first event %+v; want start with a pid", ev)
	}
	s.pid = ev.PID
	return s
}

func (s *execStream) next() wire.Event {
	s.t.Helper()
	var ev wire.Event
	if err := s.dec.Decode(&ev); err != nil {
		s.t.Fatalf("reading the exec stream: %v", err)
	}
	return ev
}

func (s *execStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// rest reads the stream to its end: stdout, stderr and the final event.
func (s *execStream) rest() (stdout, stderr string, last wire.Event) {
	s.t.Helper()
	var out, errb strings.Builder
	for {
		ev := s.next()
		switch ev.Type {
		case wire.EventStdout:
			out.Write(ev.Data)
		case wire.EventStderr:
			errb.Write(ev.Data)
		case wire.EventExit, wire.EventError:
			var extra json.RawMessage
			if err := s.dec.Decode(&extra); err != io.EOF {
				s.t.Errorf("after the %s event: %s, %v; want the end of the stream", ev.Type, extra, err)
			}
			return out.String(), errb.String(), ev
		}
	}
}

func exitCode(ev wire.Event) int {
	if ev.Type != wire.EventExit || ev.ExitCode == nil {
		return -1
	}
	return *ev.ExitCode
}

func TestExecStream(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()

	t.Run("Output", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; printf '\\000\\377'; exit 3"}, Env: map[string]string{"K": "V"}})
		out, errb, last := s.rest()
		if out != "out\n\x00\xff" || errb != "err\n" || exitCode(last) != 3 || last.Duration <= 0 || last.TimedOut {
			t.Errorf("stdout %q, stderr %q, last %+v; want %q, %q, exit 3 with a duration", out, errb, last, "out\n\x00\xff", "err\n")
		}
	})

	t.Run("CombineOutput", func(t *testing.T) {
		// One pipe for both streams: the order of writes is kept.
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "echo a; echo b >&2; echo c; echo d >&2"}, CombineOutput: true})
		out, errb, last := s.rest()
		if out != "a\nb\nc\nd\n" || errb != "" || exitCode(last) != 0 {
			t.Errorf("stdout %q, stderr %q, last %+v; want %q in order, no stderr events", out, errb, last, "a\nb\nc\nd\n")
		}
	})

	t.Run("StreamedAsProduced", func(t *testing.T) {
		// The command prints, then waits for input that is sent only once
		// the first line has arrived: it can only end if output is
		// streamed while it runs.
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "echo first; read x; echo second $x"}, StdinStream: true})
		if ev := s.next(); ev.Type != wire.EventStdout || string(ev.Data) != "first\n" {
			t.Fatalf("event %+v; want stdout %q before any input was sent", ev, "first\n")
		}
		resp := e.request("POST", fmt.Sprintf("%s/sandboxes/%s/processes/%d/stdin", wire.V1Path, id, s.pid), strings.NewReader("go\n"))
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Errorf("stdin: status %d; want 204", resp.StatusCode)
		}
		out, _, last := s.rest()
		if out != "second go\n" || exitCode(last) != 0 {
			t.Errorf("after the input: stdout %q, last %+v; want %q, exit 0", out, last, "second go\n")
		}
	})

	t.Run("Stdin", func(t *testing.T) {
		data := make([]byte, 1<<20)
		crand.Read(data)
		s := e.exec(id, wire.ExecRequest{Argv: []string{"cat"}, StdinStream: true})
		// A chunked body of unknown length, sent while the output streams.
		pr, pw := io.Pipe()
		go func() {
			for b := data; len(b) > 0; b = b[min(len(b), 4096):] {
				pw.Write(b[:min(len(b), 4096)])
			}
			pw.Close()
		}()
		done := make(chan int)
		go func() {
			resp := e.request("POST", fmt.Sprintf("%s/sandboxes/%s/processes/%d/stdin", wire.V1Path, id, s.pid), pr)
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		out, _, last := s.rest()
		if code := <-done; code != 204 {
			t.Errorf("stdin: status %d; want 204", code)
		}
		if out != string(data) || exitCode(last) != 0 {
			t.Errorf("cat of 1 MiB of stdin: %d bytes back, equal %v, last %+v; want the same bytes, exit 0", len(out), out == string(data), last)
		}

		s = e.exec(id, wire.ExecRequest{Argv: []string{"wc", "-c"}, Stdin: []byte("inline input")})
		if out, _, _ := s.rest(); strings.TrimSpace(out) != "12" {
			t.Errorf("wc -c of inline stdin = %q; want 12", out)
		}
		// No stdin at all: empty input, not a hang.
		s = e.exec(id, wire.ExecRequest{Argv: []string{"cat"}})
		if out, _, last := s.rest(); out != "" || exitCode(last) != 0 {
			t.Errorf("cat without stdin = %q, %+v; want empty output, exit 0", out, last)
		}
	})

	t.Run("StdinErrors", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "read x; echo $x; exec sleep 60.505050"}, StdinStream: true})
		path := fmt.Sprintf("/sandboxes/%s/processes/%d/stdin", id, s.pid)
		resp := e.request("POST", wire.V1Path+path, strings.NewReader("one\n"))
		resp.Body.Close()
		if ev := s.next(); ev.Type != wire.EventStdout || string(ev.Data) != "one\n" {
			t.Errorf("event %+v; want stdout %q", ev, "one\n")
		}
		e.v1Err("POST", path, "again", 409, wire.CodeConflict)
		s.close()
		s = e.exec(id, wire.ExecRequest{Argv: []string{"sleep", "60.515151"}})
		e.v1Err("POST", fmt.Sprintf("/sandboxes/%s/processes/%d/stdin", id, s.pid), "x", 409, wire.CodeConflict)
		e.v1Err("POST", fmt.Sprintf("/sandboxes/%s/processes/999999/stdin", id), "x", 404, wire.CodeProcessNotFound)
		e.v1Err("POST", fmt.Sprintf("/sandboxes/%s/processes/abc/stdin", id), "x", 400, wire.CodeBadRequest)
		e.v1Err("POST", fmt.Sprintf("/sandboxes/nope/processes/%d/stdin", s.pid), "x", 404, wire.CodeSandboxNotFound)
		s.close()
		e.noSleep(id, "60.515151")
	})

	t.Run("Timeout", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "echo started; sleep 60.111111"}, Timeout: 500})
		out, _, last := s.rest()
		if out != "started\n" || exitCode(last) != 124 || !last.TimedOut {
			t.Errorf("stdout %q, last %+v; want %q, exit 124, timedOut", out, last, "started\n")
		}
		e.noSleep(id, "60.111111")
	})

	t.Run("Kill", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "sleep 60.222222 & sleep 60.222222"}})
		if code := e.v1("POST", fmt.Sprintf("/sandboxes/%s/processes/%d/kill", id, s.pid), nil, nil); code != 204 {
			t.Errorf("kill: status %d; want 204", code)
		}
		if _, _, last := s.rest(); exitCode(last) != 137 {
			t.Errorf("after kill: %+v; want exit 137", last)
		}
		e.noSleep(id, "60.222222")
		e.v1Err("POST", fmt.Sprintf("/sandboxes/%s/processes/%d/kill", id, s.pid), nil, 404, wire.CodeProcessNotFound)
	})

	t.Run("ClientGoneKills", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "sleep 60.333333 & sleep 60.333333"}})
		s.close() // the client goes away
		eventually(t, 30*time.Second, "the stream's process leaves the server", func() bool { return e.srv.Stats().Processes == 0 })
		e.noSleep(id, "60.333333")
	})

	t.Run("ManyChunks", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' x; echo end >&2"}})
		out, errb, last := s.rest()
		if len(out) != 4<<20 || strings.Trim(out, "x") != "" || errb != "end\n" || exitCode(last) != 0 {
			t.Errorf("4 MiB: %d bytes of stdout, stderr %q, last %+v; want 4194304 x, end, exit 0", len(out), errb, last)
		}
	})

	t.Run("Processes", func(t *testing.T) {
		s := e.exec(id, wire.ExecRequest{Argv: []string{"sleep", "60.444444"}})
		var list wire.ProcessList
		e.v1("GET", "/sandboxes/"+id+"/processes", nil, &list)
		if len(list.Processes) != 1 || list.Processes[0].PID != s.pid || !list.Processes[0].Attached || list.Processes[0].Argv[1] != "60.444444" {
			t.Errorf("processes = %+v; want the one attached sleep", list)
		}
		s.close()
	})
}

func TestExecErrors(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	p := "/sandboxes/" + id + "/exec"
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"no-such-command-xyz"}}, 422, wire.CodeCommandNotFound)
	e.v1Err("POST", "/sandboxes/nope/exec", wire.ExecRequest{Argv: []string{"true"}}, 404, wire.CodeSandboxNotFound)
	e.v1Err("POST", p, wire.ExecRequest{}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{""}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"echo", "a\x00"}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"true"}, Env: map[string]string{"A=B": "x"}}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"true"}, Stdin: []byte("x"), StdinStream: true}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"true"}, Timeout: -1}, 400, wire.CodeBadRequest)
	e.v1Err("POST", p, "{", 400, wire.CodeBadRequest)
	e.v1Err("GET", p, nil, 405, wire.CodeMethodNotAllowed)
	// A missing working directory is an error before the start.
	er := e.v1Err("POST", p, wire.ExecRequest{Argv: []string{"pwd"}, Dir: "/no/such/dir"}, 404, wire.CodeNotExist)
	if !strings.Contains(er.Error, "/no/such/dir") {
		t.Errorf("exec in a missing dir: %q; want the directory named", er.Error)
	}
	if n := e.srv.Stats().Processes; n != 0 {
		t.Errorf("%d processes left after failed execs; want 0", n)
	}
}

// TestExecLines reads a stream with a plain line reader, as a client in
// any language would.
func TestExecLines(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	resp := e.request("POST", wire.V1Path+"/sandboxes/"+id+"/exec", jsonBody(wire.ExecRequest{Argv: []string{"echo", "hi"}}))
	defer resp.Body.Close()
	var types []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		types = append(types, m["type"].(string))
		if m["type"] == "exit" && m["exitCode"] != 0.0 {
			t.Errorf("exit event %v; want exitCode 0", m)
		}
	}
	if strings.Join(types, ",") != "start,stdout,exit" {
		t.Errorf("event types %q; want start, stdout, exit", types)
	}
}
