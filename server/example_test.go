package server_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server"
)

// A web app's view: the seed protocol over HTTP.
func Example() {
	p, err := local.New(local.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	srv := server.New(p, server.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close() // destroys the sandboxes it created
	ts := httptest.NewServer(srv)
	defer ts.Close()

	post := func(body string) map[string]any {
		resp, err := http.Post(ts.URL+"/api/compute", "application/json", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	id := post(`{"action": "compute.sandbox.create"}`)["sandboxId"]
	m := post(fmt.Sprintf(`{"action": "compute.sandbox.runCode", "sandboxId": %q, "code": "print(6 * 7)"}`, id))
	fmt.Print(m["result"].(map[string]any)["stdout"])
	m = post(fmt.Sprintf(`{"action": "compute.sandbox.runCode", "sandboxId": %q}`, id))
	fmt.Println(m["success"], m["error"])
	// Output:
	// 42
	// false code is required
}
