package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// termTimeout bounds every wait on a terminal: a guard against hangs,
// not a speed limit.
const termTimeout = 30 * time.Second

// dial opens the terminal of sandbox id with query q, sending the env's
// token in the Authorization header unless opts has headers of its own.
func (e *env) dial(id string, q url.Values, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	e.t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{Subprotocols: []string{wire.TerminalSubprotocol}}
	}
	if opts.HTTPHeader == nil && e.token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + e.token}}
	}
	u := e.ts.URL + wire.TerminalPath(id)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), termTimeout)
	defer cancel()
	return websocket.Dial(ctx, u, opts)
}

// open opens a terminal that must start, and reads it in the background.
func (e *env) open(id string, q url.Values) *wsTerm {
	e.t.Helper()
	c, resp, err := e.dial(id, q, nil)
	if err != nil {
		e.t.Fatalf("terminal of %s (%v): %v (reply %s)", id, q, err, replyOf(resp))
	}
	if c.Subprotocol() != wire.TerminalSubprotocol {
		e.t.Errorf("negotiated subprotocol %q; want %s", c.Subprotocol(), wire.TerminalSubprotocol)
	}
	return watch(e.t, c)
}

// replyOf describes a failed handshake's reply.
func replyOf(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	var er wire.ErrorResponse
	json.NewDecoder(resp.Body).Decode(&er)
	return strconv.Itoa(resp.StatusCode) + " " + er.Code + ": " + er.Error
}

// argv is the query of a terminal running argv.
func argv(args ...string) url.Values { return url.Values{wire.TerminalArg: args} }

// wsTerm is a client's view of a terminal socket: the output so far, the
// text messages, and how the socket ended.
type wsTerm struct {
	t *testing.T
	c *websocket.Conn

	mu      sync.Mutex
	changed chan struct{}
	out     strings.Builder
	seen    int
	msgs    []wire.TerminalMessage
	err     error // the socket's end
	done    chan struct{}
}

func watch(t *testing.T, c *websocket.Conn) *wsTerm {
	w := &wsTerm{t: t, c: c, changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			typ, b, err := c.Read(context.Background())
			w.mu.Lock()
			switch {
			case err != nil:
				w.err = err
			case typ == websocket.MessageBinary:
				w.out.Write(b)
			default:
				var m wire.TerminalMessage
				if jerr := json.Unmarshal(b, &m); jerr != nil {
					w.t.Errorf("text frame %q is not JSON: %v", b, jerr)
				}
				w.msgs = append(w.msgs, m)
			}
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.CloseNow()
		<-w.done
	})
	return w
}

// until waits for cond, called with w.mu held, to hold.
func (w *wsTerm) until(what string, cond func() bool) {
	w.t.Helper()
	timeout := time.After(termTimeout)
	for {
		w.mu.Lock()
		ok, changed, out, err := cond(), w.changed, w.out.String(), w.err
		w.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			w.t.Fatalf("the socket ended (%v) before %s; output %q, messages %+v", err, what, out, w.msgs)
		}
		select {
		case <-changed:
		case <-timeout:
			w.t.Fatalf("no %s within %v; output %q, messages %+v", what, termTimeout, out, w.msgs)
		}
	}
}

// expect waits until the output after the last match matches re.
func (w *wsTerm) expect(re string) []string {
	w.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	w.until("output matching "+re, func() bool {
		s := w.out.String()[w.seen:]
		loc := rx.FindStringSubmatchIndex(s)
		if loc == nil {
			return false
		}
		m = rx.FindStringSubmatch(s)
		w.seen += loc[1]
		return true
	})
	return m
}

// message waits for the text message number i (from 0).
func (w *wsTerm) message(i int) wire.TerminalMessage {
	w.t.Helper()
	var m wire.TerminalMessage
	w.until("text message #"+strconv.Itoa(i+1), func() bool {
		if len(w.msgs) <= i {
			return false
		}
		m = w.msgs[i]
		return true
	})
	return m
}

// typeIn sends keystrokes.
func (w *wsTerm) typeIn(keys string) {
	w.t.Helper()
	if err := w.c.Write(w.t.Context(), websocket.MessageBinary, []byte(keys)); err != nil {
		w.t.Fatalf("sending %q: %v", keys, err)
	}
}

// text sends a text frame.
func (w *wsTerm) text(s string) {
	w.t.Helper()
	if err := w.c.Write(w.t.Context(), websocket.MessageText, []byte(s)); err != nil {
		w.t.Fatalf("sending %s: %v", s, err)
	}
}

// end waits for the server to close the socket and returns the last text
// message and the close status.
func (w *wsTerm) end() (wire.TerminalMessage, websocket.StatusCode) {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(termTimeout):
		w.t.Fatalf("the server did not close the socket within %v; output %q", termTimeout, w.out.String())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) == 0 {
		w.t.Fatalf("the socket ended (%v) without a text message; output %q", w.err, w.out.String())
	}
	return w.msgs[len(w.msgs)-1], websocket.CloseStatus(w.err)
}

// sleepRuns waits until a sleep with the marker runs in sandbox id.
func (e *env) sleepRuns(id, mark string) {
	e.t.Helper()
	script := `for d in /proc/[0-9]*; do a=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline"); case "$a" in "sleep $1"*) echo "$a";; esac; done; exit 0`
	eventually(e.t, termTimeout, "sleep "+mark+" runs", func() bool {
		m := e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", script, "sh", mark}})
		return m["result"].(map[string]any)["stdout"].(string) != ""
	})
}

// TestTerminal runs a program on a terminal through the WebSocket: output
// as binary frames, keystrokes, resizes, warnings for what fails without
// ending the terminal, and the exit code in the last text frame before a
// normal close.
func TestTerminal(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{Token: "terminal-token-0123456789"})
	id := e.create()
	q := argv("/bin/sh", "-c", `echo "size $(stty size) term=$TERM foo=$FOO dir=$(pwd)"; read -r line; echo "got<$line>"; read -r line; stty size; exit 3`)
	q.Set(wire.TerminalRows, "31")
	q.Set(wire.TerminalCols, "101")
	q.Add(wire.TerminalEnv, "FOO=bar=baz")
	q.Set(wire.TerminalDir, "/tmp")
	w := e.open(id, q)
	w.expect(`size 31 101 term=xterm-256color foo=bar=baz dir=/tmp\r\n`)
	w.typeIn("héllo\r")
	w.expect(`got<héllo>\r\n`)

	// A resize, then what fails without ending the terminal: a size out
	// of range, a message that is not JSON, a type the server does not
	// know. Each gets a warning, in order.
	w.text(`{"type":"resize","rows":40,"cols":120}`)
	w.text(`{"type":"resize","rows":0,"cols":120}`)
	w.text(`not json`)
	w.text(`{"type":"launch-missiles"}`)
	for i, code := range []string{wire.CodeBadRequest, wire.CodeBadRequest, wire.CodeBadRequest} {
		if m := w.message(i); m.Type != wire.TerminalWarning || m.Code != code || m.Error == "" {
			t.Errorf("text message #%d: %+v; want a warning with code %s and a message", i+1, m, code)
		}
	}
	w.typeIn("\r")
	w.expect(`40 120\r\n`)
	last, status := w.end()
	if last.Type != wire.TerminalExit || last.ExitCode == nil || *last.ExitCode != 3 || status != websocket.StatusNormalClosure {
		t.Errorf("the end: %+v, close status %v; want {exit 3} and a normal close", last, status)
	}

	// The access log has the terminal, as a 101, once its handler is
	// done (just after the close).
	eventually(t, termTimeout, "an access-log record of the terminal with status 101", func() bool {
		for _, r := range e.logs.records() {
			if r["action"] == "terminal" && r["status"] == 101.0 && r["sandbox"] == id {
				return true
			}
		}
		return false
	})

	// A program killed by a signal: 128+n.
	w = e.open(id, argv("/bin/sh", "-c", "kill -9 $$"))
	if last, _ := w.end(); last.Type != wire.TerminalExit || last.ExitCode == nil || *last.ExitCode != 137 {
		t.Errorf("a program killed by SIGKILL: %+v; want exit 137", last)
	}
	// No arg: the default shell, on a terminal.
	w = e.open(id, url.Values{wire.TerminalEnv: {"PS1=prompt$ "}})
	w.typeIn("PS1='ready> '; tty\r")
	w.expect(`/dev/pts/\d+\r\n`)
	w.expect(`ready> `)
	w.typeIn("exit 5\r")
	if last, _ := w.end(); last.Type != wire.TerminalExit || last.ExitCode == nil || *last.ExitCode != 5 {
		t.Errorf("exit 5 in the default shell: %+v; want exit 5", last)
	}
}

// TestTerminalAuth checks the token on the terminal endpoint: in the
// Authorization header, or offered as the bearer subprotocol (which the
// server never selects); without it, or with a wrong one, 401 before any
// upgrade.
func TestTerminalAuth(t *testing.T) {
	t.Parallel()
	const token = "terminal-auth-token-0123456789"
	e := start(t, nil, server.Options{Token: token})
	id := e.create()
	q := argv("/bin/sh", "-c", "echo authorized")
	for _, c := range []struct {
		name   string
		header http.Header
		protos []string
	}{
		{"no token", http.Header{}, []string{wire.TerminalSubprotocol}},
		{"wrong header", http.Header{"Authorization": {"Bearer wrong"}}, []string{wire.TerminalSubprotocol}},
		{"wrong subprotocol", http.Header{}, []string{wire.TerminalSubprotocol, wire.BearerSubprotocol("wrong")}},
		{"bad base64 subprotocol", http.Header{}, []string{wire.TerminalSubprotocol, "bearer.***"}},
		// The header wins: a right token in the subprotocol does not mend
		// a wrong header.
		{"wrong header, right subprotocol", http.Header{"Authorization": {"Bearer wrong"}}, []string{wire.TerminalSubprotocol, wire.BearerSubprotocol(token)}},
	} {
		conn, resp, err := e.dial(id, q, &websocket.DialOptions{HTTPHeader: c.header, Subprotocols: c.protos})
		if err == nil {
			conn.CloseNow()
			t.Errorf("%s: the terminal opened; want 401", c.name)
			continue
		}
		var er wire.ErrorResponse
		if resp != nil {
			json.NewDecoder(resp.Body).Decode(&er)
		}
		if resp == nil || resp.StatusCode != 401 || er.Code != wire.CodeUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %v, %s; want 401 unauthorized with WWW-Authenticate", c.name, err, replyOf(resp))
		}
	}
	// The token as a subprotocol, as a browser sends it.
	c, resp, err := e.dial(id, q, &websocket.DialOptions{HTTPHeader: http.Header{}, Subprotocols: []string{wire.BearerSubprotocol(token), wire.TerminalSubprotocol}})
	if err != nil {
		t.Fatalf("token as a subprotocol: %v (%s)", err, replyOf(resp))
	}
	if got := resp.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != wire.TerminalSubprotocol {
		t.Errorf("Sec-WebSocket-Protocol of the reply %q; want only %s (never the token)", got, wire.TerminalSubprotocol)
	}
	w := watch(t, c)
	w.expect(`authorized\r\n`)
	if last, _ := w.end(); last.Type != wire.TerminalExit || *last.ExitCode != 0 {
		t.Errorf("the end: %+v; want exit 0", last)
	}
	// The subprotocol is no token for requests that are not WebSockets.
	resp = e.request("GET", wire.V1Path+"/sandboxes/"+id, nil, "Authorization", "", "Sec-WebSocket-Protocol", wire.BearerSubprotocol(token))
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("GET info with the token only as a subprotocol: %d; want 401", resp.StatusCode)
	}
}

// TestTerminalTenants checks that another tenant's sandbox has no
// terminal: 404, as for an unknown id.
func TestTerminalTenants(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{Tokens: map[string]string{aliceToken: "alice", bobToken: "bob", adminToken: server.AdminTenant}})
	alice, bob, admin := e.as(aliceToken), e.as(bobToken), e.as(adminToken)
	id := alice.create()
	q := argv("/bin/sh", "-c", "echo mine")
	if c, resp, err := bob.dial(id, q, nil); err == nil {
		c.CloseNow()
		t.Errorf("bob opened a terminal in alice's sandbox")
	} else if got := replyOf(resp); !strings.HasPrefix(got, "404 "+wire.CodeSandboxNotFound) {
		t.Errorf("bob's terminal in alice's sandbox: %s; want 404 %s", got, wire.CodeSandboxNotFound)
	}
	for _, who := range []*env{alice, admin} {
		w := who.open(id, q)
		w.expect(`mine\r\n`)
		w.end()
	}
}

// TestTerminalBadRequests checks that what is wrong with a request is
// answered before the upgrade, as a v1 error.
func TestTerminalBadRequests(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	ok := argv("/bin/true")
	with := func(k, v string) url.Values {
		q := argv("/bin/true")
		q[k] = append(q[k], v)
		return q
	}
	for _, c := range []struct {
		name   string
		id     string
		q      url.Values
		protos []string
		status int
		code   string
	}{
		{"rows 0", id, with(wire.TerminalRows, "0"), nil, 400, wire.CodeBadRequest},
		{"rows not a number", id, with(wire.TerminalRows, "tall"), nil, 400, wire.CodeBadRequest},
		{"cols past the maximum", id, with(wire.TerminalCols, strconv.Itoa(compute.MaxTerminalSize+1)), nil, 400, wire.CodeBadRequest},
		{"two rows", id, with(wire.TerminalRows, "5"), nil, 400, wire.CodeBadRequest}, // with() adds to none: see below
		{"env without =", id, with(wire.TerminalEnv, "JUSTNAME"), nil, 400, wire.CodeBadRequest},
		{"env without a name", id, with(wire.TerminalEnv, "=value"), nil, 400, wire.CodeBadRequest},
		{"env with NUL", id, with(wire.TerminalEnv, "A=b\x00c"), nil, 400, wire.CodeBadRequest},
		{"arg with NUL", id, with(wire.TerminalArg, "a\x00b"), nil, 400, wire.CodeBadRequest},
		{"empty program", id, argv(""), nil, 400, wire.CodeBadRequest},
		{"dir with NUL", id, with(wire.TerminalDir, "/tmp\x00"), nil, 400, wire.CodeBadRequest},
		{"another subprotocol", id, ok, []string{"chat.v2"}, 400, wire.CodeBadRequest},
		{"unknown sandbox", "no-such-sandbox", ok, nil, 404, wire.CodeSandboxNotFound},
		{"missing directory", id, with(wire.TerminalDir, "/no/such/dir"), nil, 0, ""},
	} {
		q := c.q
		if c.name == "two rows" {
			q = with(wire.TerminalRows, "5")
			q.Add(wire.TerminalRows, "6")
		}
		protos := c.protos
		if protos == nil {
			protos = []string{wire.TerminalSubprotocol}
		}
		conn, resp, err := e.dial(c.id, q, &websocket.DialOptions{Subprotocols: protos})
		if err == nil {
			conn.CloseNow()
			t.Errorf("%s: the terminal opened; want %d %s", c.name, c.status, c.code)
			continue
		}
		got := replyOf(resp)
		if c.status == 0 {
			// Any v1 error, said before the upgrade.
			if resp == nil || resp.StatusCode < 400 {
				t.Errorf("%s: %v; want a v1 error reply", c.name, err)
			}
			continue
		}
		if !strings.HasPrefix(got, strconv.Itoa(c.status)+" "+c.code+": ") {
			t.Errorf("%s: %s; want %d %s with a message", c.name, got, c.status, c.code)
		}
	}
	// A plain GET is no WebSocket.
	er := e.v1Err("GET", "/sandboxes/"+id+"/terminal", nil, 400, wire.CodeBadRequest)
	if !strings.Contains(er.Error, "WebSocket") {
		t.Errorf("plain GET: %q; want a message that says to open a WebSocket", er.Error)
	}
	// A program that does not exist: refused at the start (422), or run
	// and exiting 127, as the provider does it.
	conn, resp, err := e.dial(id, argv("no-such-program-4242"), nil)
	if err != nil {
		if got := replyOf(resp); !strings.HasPrefix(got, "422 "+wire.CodeCommandNotFound) {
			t.Errorf("a missing program: %s; want 422 %s or exit 127", got, wire.CodeCommandNotFound)
		}
	} else {
		w := watch(t, conn)
		if last, _ := w.end(); last.Type != wire.TerminalExit || *last.ExitCode != 127 {
			t.Errorf("a missing program: %+v; want 422 or exit 127", last)
		}
	}
}

// TestTerminalHangUp checks that a client that goes away hangs up its
// terminal: the program and what it started are killed, whether the
// client closes the socket properly or just drops it.
func TestTerminalHangUp(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	for i, drop := range []bool{false, true} {
		mark := "60.5" + strconv.Itoa(i) + "1"
		w := e.open(id, argv("/bin/sh", "-c", "sleep "+mark+" & sleep "+mark+"; echo never"))
		e.sleepRuns(id, mark)
		if drop {
			w.c.CloseNow()
		} else {
			w.c.Close(websocket.StatusNormalClosure, "bye")
		}
		e.noSleep(id, mark)
	}
	// The sandbox is in use no more: the server holds no request for it.
	eventually(t, termTimeout, "the terminal requests end", func() bool { return e.srv.Stats().Requests == 0 })
}

// TestTerminalShutdown checks that Shutdown ends open terminals: they are
// requests in flight, told the server is shutting down once its grace
// is over, their programs killed with their sandbox.
func TestTerminalShutdown(t *testing.T) {
	t.Parallel()
	p := newLocal(t)
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	e := &env{t: t, p: p, srv: srv, ts: ts, logs: &logBuffer{}}
	id := e.create()
	w := e.open(id, argv("/bin/sh", "-c", "echo up; sleep 60.616"))
	w.expect(`up\r\n`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(ctx) }()
	last, status := w.end()
	if last.Type != wire.TerminalError || last.Code != wire.CodeUnavailable || status != websocket.StatusNormalClosure {
		t.Errorf("the end of a terminal at shutdown: %+v, status %v; want an error with code %s, then a normal close", last, status, wire.CodeUnavailable)
	}
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v; want it to report the request it cancelled", err)
		}
	case <-time.After(termTimeout):
		t.Fatalf("Shutdown did not return within %v", termTimeout)
	}
	if _, err := p.Get(t.Context(), id); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("the sandbox after Shutdown: %v; want it destroyed", err)
	}
}

// TestTerminalKeepsSandbox checks that the idle reaper leaves a sandbox
// with an open terminal alone, however long, and reaps it once the
// terminal is closed.
func TestTerminalKeepsSandbox(t *testing.T) {
	t.Parallel()
	p := newLocal(t)
	e := start(t, p, server.Options{IdleTimeout: 200 * time.Millisecond})
	id := e.create()
	w := e.open(id, argv("/bin/cat"))
	time.Sleep(1500 * time.Millisecond) // several idle timeouts, nothing typed
	if _, err := p.Get(t.Context(), id); err != nil {
		t.Fatalf("the sandbox of an open terminal after its idle time: %v; want it alive", err)
	}
	w.typeIn("still here\r")
	w.expect(`still here\r\nstill here\r\n`)
	w.c.Close(websocket.StatusNormalClosure, "")
	eventually(t, termTimeout, "the sandbox is reaped once its terminal is closed", func() bool {
		_, err := p.Get(t.Context(), id)
		return errors.Is(err, compute.ErrNotFound)
	})
}

// TestTerminalIdle checks the rule that replaces the request timeout for
// terminals: one in use lives past RequestTimeout; one without input or
// output for that long is closed with an error of code timeout.
func TestTerminalIdle(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{RequestTimeout: 600 * time.Millisecond})
	id := e.create()
	w := e.open(id, argv("/bin/cat"))
	for i := range 8 { // 8 × 200 ms: past the request timeout, in use
		line := "line-" + strconv.Itoa(i)
		w.typeIn(line + "\r")
		w.expect(line + `\r\n` + line + `\r\n`)
		time.Sleep(200 * time.Millisecond)
	}
	// Now idle: closed.
	last, _ := w.end()
	if last.Type != wire.TerminalError || last.Code != wire.CodeTimeout || !strings.Contains(last.Error, "request-timeout") {
		t.Errorf("the end of an idle terminal: %+v; want an error with code timeout that names --request-timeout", last)
	}
}

// TestTerminalOrigin checks the Origin rules of the terminal endpoint,
// which are the server's: a server without a token opens terminals to
// pages on this machine only (any port); one that serves other machines
// without a token (behind a proxy of its own), to pages of its own
// origin only.
func TestTerminalOrigin(t *testing.T) {
	t.Parallel()
	local := start(t, nil, server.Options{})
	id := local.create()
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"http://localhost:5173", true},
		{local.ts.URL, true},
		{"https://evil.example", false},
	} {
		conn, resp, err := local.dial(id, argv("/bin/true"), &websocket.DialOptions{
			Subprotocols: []string{wire.TerminalSubprotocol}, HTTPHeader: http.Header{"Origin": {c.origin}},
		})
		if c.ok != (err == nil) {
			t.Errorf("no token, origin %s: %v (%s); want opened %v", c.origin, err, replyOf(resp), c.ok)
		}
		if err == nil {
			watch(t, conn).end()
		} else if got := replyOf(resp); !strings.HasPrefix(got, "403 "+wire.CodeForbidden) {
			t.Errorf("no token, origin %s: %s; want 403 forbidden", c.origin, got)
		}
	}

	open := start(t, nil, server.Options{AllowUnauthenticatedRemote: true})
	id = open.create()
	host := strings.TrimPrefix(open.ts.URL, "http://")
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + host, true},
		{"http://localhost:5173", false},
		{"https://evil.example", false},
	} {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		conn, resp, err := open.dial(id, argv("/bin/true"), &websocket.DialOptions{Subprotocols: []string{wire.TerminalSubprotocol}, HTTPHeader: h})
		if c.ok != (err == nil) {
			t.Errorf("AllowUnauthenticatedRemote, origin %q: %v (%s); want opened %v", c.origin, err, replyOf(resp), c.ok)
		}
		if err == nil {
			watch(t, conn).end()
		}
	}
}

// TestTerminalBackpressure checks that a client that does not read stops
// the program instead of making the server buffer its output: the
// program's count of bytes written stops growing, far below what it
// would write.
func TestTerminalBackpressure(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	c, resp, err := e.dial(id, argv("/bin/sh", "-c", "exec seq 1 900000000"), nil)
	if err != nil {
		t.Fatalf("terminal: %v (%s)", err, replyOf(resp))
	}
	defer c.CloseNow()
	// Nothing is read from c. seq's wchar (/proc/PID/io) must settle.
	script := `for d in /proc/[0-9]*; do case "$(tr '\0' ' ' 2>/dev/null <"$d/cmdline")" in "seq 1 900000000 ") sed -n 's/^wchar: //p' "$d/io";; esac; done`
	written := func() int64 {
		m := e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", script}})
		n, _ := strconv.ParseInt(strings.TrimSpace(m["result"].(map[string]any)["stdout"].(string)), 10, 64)
		return n
	}
	var last int64 = -1
	eventually(t, termTimeout, "seq stops writing while the client reads nothing", func() bool {
		n := written()
		settled := n > 0 && n == last
		last = n
		time.Sleep(300 * time.Millisecond)
		return settled
	})
	const bound = 64 << 20
	if last > bound {
		t.Errorf("seq wrote %d bytes before it was stopped; want the server and the kernel to hold less than %d", last, bound)
	}
	t.Logf("seq was stopped after writing %d bytes that the client did not read", last)
}
