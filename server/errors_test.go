package server_test

import (
	"strings"
	"testing"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// TestArgumentsTooLong is the regression test for "E2BIG is a 500"
// (issue 9, degraded): a command line or environment larger than the
// kernel takes is the request's fault, answered 413 with what to do.
func TestArgumentsTooLong(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	big := strings.Repeat("a", 200<<10) // past the kernel's 128 KiB for one string
	code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "echo", "args": []string{big}})
	if code != 413 || !strings.Contains(m["error"].(string), "standard input") {
		t.Errorf("runCommand with a 200 KiB argument: %d %v; want 413 saying how to pass large data", code, m["error"])
	}
	many := make([]string, 24)
	for i := range many {
		many[i] = big[:100<<10]
	}
	if code, m := e.seed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "echo", "args": many}); code != 413 {
		t.Errorf("runCommand with 2.4 MiB of arguments: %d %v; want 413", code, m["error"])
	}
	e.v1Err("POST", "/sandboxes/"+id+"/exec", wire.ExecRequest{Argv: []string{"true"}, Env: map[string]string{"BIG": big}}, 413, wire.CodeTooLarge)
	// The sandbox is fine afterwards.
	if out := e.shell(id, "echo ok"); out != "ok\n" {
		t.Errorf("after the refused commands: %q", out)
	}
	// Labels that every list would repeat are bounded too.
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Metadata: map[string]string{"k": big}}, 413, wire.CodeTooLarge)
}
