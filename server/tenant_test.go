package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef"
	adminToken = "admin-token-0123456789abcdef"
)

// as returns a copy of the env that sends token.
func (e *env) as(token string) *env {
	c := *e
	c.token = token
	return &c
}

// TestTenants is the regression test for "one token sees and destroys
// every sandbox" (issue 9, degraded): with Options.Tokens each tenant
// sees, uses and destroys only the sandboxes it created; another
// tenant's sandbox answers exactly as an unknown id (404, not 403), and
// the admin tenant sees all.
func TestTenants(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{Tokens: map[string]string{aliceToken: "alice", bobToken: "bob", adminToken: server.AdminTenant}})
	alice, bob, admin := e.as(aliceToken), e.as(bobToken), e.as(adminToken)
	a := alice.create()
	var bInfo wire.SandboxInfo
	if code := bob.v1("POST", "/sandboxes", wire.CreateRequest{}, &bInfo); code != 201 {
		t.Fatalf("bob's create: %d", code)
	}
	b := bInfo.ID

	// Lists: each their own; the admin both.
	ids := func(env *env) string {
		m := env.seedOK(map[string]any{"action": "compute.sandbox.list"})
		var out []string
		for _, s := range m["sandboxes"].([]any) {
			out = append(out, s.(map[string]any)["sandboxId"].(string))
		}
		var l wire.SandboxList
		env.v1("GET", "/sandboxes", nil, &l)
		if len(l.Sandboxes) != len(out) {
			t.Errorf("v1 list has %d sandboxes, seed list %d", len(l.Sandboxes), len(out))
		}
		return strings.Join(out, ",")
	}
	if got := ids(alice); got != a {
		t.Errorf("alice lists %q; want only her %q", got, a)
	}
	if got := ids(bob); got != b {
		t.Errorf("bob lists %q; want only his %q", got, b)
	}
	if got := ids(admin); got != a+","+b {
		t.Errorf("admin lists %q; want both, oldest first: %q", got, a+","+b)
	}

	// Another tenant's sandbox is an unknown id, in every action.
	unknown := "lsb-doesnotexist0000"
	for _, action := range []map[string]any{
		{"action": "compute.sandbox.getInfo"},
		{"action": "compute.sandbox.runCommand", "command": "true"},
		{"action": "compute.sandbox.filesystem.readFile", "path": "/etc/hostname"},
		{"action": "compute.sandbox.create", "options": map[string]any{"sandboxId": "ID"}},
	} {
		reply := func(id string) (int, string) {
			body := map[string]any{}
			for k, v := range action {
				body[k] = v
			}
			body["sandboxId"] = id
			if _, ok := body["options"]; ok {
				body["options"] = map[string]any{"sandboxId": id}
			}
			code, m := alice.seed(body)
			return code, strings.ReplaceAll(m["error"].(string), id, "ID")
		}
		codeB, msgB := reply(b)
		codeU, msgU := reply(unknown)
		if codeB != 404 || codeB != codeU || msgB != msgU {
			t.Errorf("%v on bob's sandbox as alice: %d %q; want what an unknown id gets: %d %q", action["action"], codeB, msgB, codeU, msgU)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/sandboxes/" + b},
		{"POST", "/sandboxes/" + b + "/exec"},
		{"GET", "/sandboxes/" + b + "/processes"},
		{"POST", "/sandboxes/" + b + "/processes/1/kill"},
		{"GET", "/sandboxes/" + b + "/files?path=/etc/hostname"},
		{"PUT", "/sandboxes/" + b + "/files?path=x"},
		{"GET", "/sandboxes/" + b + "/stat?path=/"},
		{"GET", "/sandboxes/" + b + "/dir?path=/"},
		{"POST", "/sandboxes/" + b + "/dir?path=d"},
		{"DELETE", "/sandboxes/" + b + "/files?path=x"},
	} {
		var in any
		if c.method == "POST" && strings.HasSuffix(c.path, "/exec") {
			in = wire.ExecRequest{Argv: []string{"true"}}
		}
		alice.v1Err(c.method, c.path, in, 404, wire.CodeSandboxNotFound)
	}
	// Destroying it is the no-op an unknown id gets, and bob keeps it.
	alice.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": b})
	if code := alice.v1("DELETE", "/sandboxes/"+b, nil, nil); code != 204 {
		t.Errorf("v1 destroy of bob's sandbox as alice: %d; want 204, as for an unknown id", code)
	}
	if code, m := bob.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": b}); code != 200 {
		t.Errorf("bob's sandbox after alice's destroys: %d %v; want it alive", code, m)
	}
	// Bob uses his own.
	if out := bob.shell(b, "echo mine"); out != "mine\n" {
		t.Errorf("bob's command: %q", out)
	}
	// The admin reaches and destroys any.
	if out := admin.shell(b, "echo admin"); out != "admin\n" {
		t.Errorf("admin's command in bob's sandbox: %q", out)
	}
	admin.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": b})
	if code, _ := bob.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": b}); code != 404 {
		t.Errorf("bob's sandbox after the admin destroyed it: %d; want 404", code)
	}
	// A token not in the table is refused; the tenants' tokens all work.
	for tok, want := range map[string]int{aliceToken: 200, bobToken: 200, adminToken: 200, "carol-token-0123456789abcdef": 401, aliceToken[:10]: 401, aliceToken + "x": 401} {
		code, _ := e.as(tok).seed(map[string]any{"action": "compute.sandbox.list"})
		if code != want {
			t.Errorf("list with token %q: %d; want %d", tok, code, want)
		}
	}
}

// TestTokenIsAdmin checks that Options.Token alongside Tokens is an admin
// token, and alone (the single-token server) sees everything it made.
func TestTokenIsAdmin(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{Token: adminToken, Tokens: map[string]string{aliceToken: "alice"}})
	a := e.as(aliceToken).create()
	if out := e.shell(a, "echo seen"); out != "seen\n" {
		t.Errorf("Token's command in alice's sandbox: %q", out)
	}
}

func TestParseTokens(t *testing.T) {
	t.Parallel()
	got, err := server.ParseTokens(strings.NewReader("# tenants\n\nalice: tok:with:colons \n bob:t2\nadmin:t3\nalice:t4\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tok:with:colons": "alice", "t2": "bob", "t3": "admin", "t4": "alice"}
	if len(got) != len(want) {
		t.Errorf("ParseTokens = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ParseTokens[%q] = %q; want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"", "# only a comment\n", "alice\n", ":tok\n", "alice:\n", "alice:t\nbob:t\n"} {
		if _, err := server.ParseTokens(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseTokens(%q) succeeded; want an error", bad)
		}
	}
}

// TestNoTokenServesOnlyThisMachine checks the guard of a server without a
// token, now in package server for every user of New: another machine, a
// host name that is not this machine's (DNS rebinding), and a web page of
// another site are refused.
func TestNoTokenServesOnlyThisMachine(t *testing.T) {
	t.Parallel()
	srv := server.New(newLocal(t), server.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	for _, c := range []struct {
		remote, host, origin string
		code                 int
	}{
		{"127.0.0.1:5000", "127.0.0.1:8080", "", 200},
		{"[::1]:5000", "localhost:8080", "http://localhost:3000", 200},
		{"192.0.2.7:5000", "127.0.0.1:8080", "", 403},
		{"127.0.0.1:5000", "rebound.evil.example", "", 403},
		{"127.0.0.1:5000", "127.0.0.1:8080", "https://evil.example", 403},
		{"127.0.0.1:5000", "127.0.0.1:8080", "null", 403},
	} {
		req := httptest.NewRequest("POST", wire.ProtocolPath, strings.NewReader(`{"action":"compute.sandbox.list"}`))
		req.RemoteAddr, req.Host = c.remote, c.host
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != c.code || c.code == 403 && !strings.Contains(rec.Body.String(), "set a token") {
			t.Errorf("remote %s, host %s, origin %q: %d %s; want %d", c.remote, c.host, c.origin, rec.Code, rec.Body, c.code)
		}
	}
	// Behind an authenticating proxy of one's own, it can be opened.
	open := server.New(newLocal(t), server.Options{AllowUnauthenticatedRemote: true, Logger: slog.New(slog.DiscardHandler)})
	defer open.Close()
	req := httptest.NewRequest("POST", wire.ProtocolPath, strings.NewReader(`{"action":"compute.sandbox.list"}`))
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("AllowUnauthenticatedRemote: %d %s; want 200", rec.Code, rec.Body)
	}
}
