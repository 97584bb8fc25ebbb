package server_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// A server made without a Logger writes no line per request: a library
// does not fill its user's logs unless asked.
func TestNoAccessLogUnlessAsked(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	p, err := local.New(local.Options{Prestart: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv := server.New(p, server.Options{})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for range 3 {
		resp, err := http.Post(ts.URL+wire.ProtocolPath, "application/json", strings.NewReader(`{"action":"compute.sandbox.list"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if buf.Len() != 0 {
		t.Errorf("a server without a Logger logged requests:\n%s", buf.String())
	}
	// Asked, it does.
	var asked bytes.Buffer
	srv2 := server.New(p, server.Options{Logger: slog.New(slog.NewTextHandler(&asked, nil))})
	defer srv2.Close()
	ts2 := httptest.NewServer(srv2)
	defer ts2.Close()
	resp, err := http.Post(ts2.URL+wire.ProtocolPath, "application/json", strings.NewReader(`{"action":"compute.sandbox.list"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(asked.String(), "compute.sandbox.list") && !strings.Contains(asked.String(), "list") {
		t.Errorf("a server with a Logger logged %q", asked.String())
	}
}
