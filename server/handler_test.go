package server_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/server"
)

// TestProtocolHandler checks that ProtocolHandler answers the ComputeSDK
// request protocol at a path of the caller's choosing, with the server's
// auth.
func TestProtocolHandler(t *testing.T) {
	t.Parallel()
	srv := server.New(nil, server.Options{Token: "t", IdleTimeout: -1, Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/my/compute", srv.ProtocolHandler())
	ts := httptest.NewServer(mux)
	defer ts.Close()

	post := func(token string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/my/compute", strings.NewReader(`{"action":"compute.sandbox.getInfo","sandboxId":"sb-1"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	if code, m := post("t"); code != 404 || m["success"] != false || m["error"] != "Sandbox sb-1 not found" || m["sandboxId"] != "sb-1" {
		t.Errorf("unknown sandbox: %d %v; want 404 and the protocol's reply", code, m)
	}
	if code, m := post("wrong"); code != 401 || m["success"] != false {
		t.Errorf("wrong token: %d %v; want 401 in the protocol's shape", code, m)
	}
}
