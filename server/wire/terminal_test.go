package wire_test

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

// TestTerminalQuery checks that a request survives its query, and that
// ParseTerminalQuery refuses what is malformed with driver.ErrInvalid,
// naming the parameter.
func TestTerminalQuery(t *testing.T) {
	req := &driver.TerminalRequest{
		Argv: []string{"python3", "-c", "print('a b&c=d')", ""},
		Env:  map[string]string{"TERM": "xterm", "EQ": "a=b", "EMPTY": ""},
		Dir:  "/work dir", Rows: 31, Cols: 101,
	}
	got, err := wire.ParseTerminalQuery(wire.TerminalQuery(req))
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Errorf("round trip of %+v: %+v, %v", req, got, err)
	}
	if got, err := wire.ParseTerminalQuery(url.Values{}); err != nil || got.Rows != 0 || got.Argv != nil || got.Env != nil {
		t.Errorf("no parameters: %+v, %v; want defaults (zero size, no argv, no env)", got, err)
	}
	for _, raw := range []string{
		"rows=0", "rows=10001", "cols=-1", "rows=x", "rows=1&rows=2", "cols=",
		"env=NAME", "env==v", "arg=", "arg=a%00b", "arg=sh&arg=a%00", "dir=%2Ftmp%00", "env=A=b%00",
	} {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wire.ParseTerminalQuery(q)
		name, _, _ := strings.Cut(raw, "=")
		if !errors.Is(err, driver.ErrInvalid) || !strings.Contains(err.Error(), name) {
			t.Errorf("?%s: %v; want driver.ErrInvalid naming %s", raw, err, name)
		}
	}
}

// TestBearerSubprotocol checks that a token travels as a subprotocol a
// browser accepts (only token characters) and comes back whole.
func TestBearerSubprotocol(t *testing.T) {
	for _, tok := range []string{"s3cret", "with spaces/and+slashes=", "ünïcode", strings.Repeat("x", 300)} {
		p := wire.BearerSubprotocol(tok)
		if strings.ContainsAny(p, " /+=,;\"()<>@:\\[]?{}") {
			t.Errorf("BearerSubprotocol(%q) = %q: not a token a browser takes as a subprotocol", tok, p)
		}
		if got, ok := wire.TokenFromSubprotocol(p); !ok || got != tok {
			t.Errorf("TokenFromSubprotocol(%q) = %q, %v; want %q", p, got, ok, tok)
		}
	}
	for _, p := range []string{wire.TerminalSubprotocol, "bearer.***", "bearer.YQ==", "Bearer.YQ"} {
		if got, ok := wire.TokenFromSubprotocol(p); ok {
			t.Errorf("TokenFromSubprotocol(%q) = %q; want no token", p, got)
		}
	}
}
