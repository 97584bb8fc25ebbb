package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpCall calls a tool and fails the test on a protocol error.
func mcpCall(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliHangGuard)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s(%v): %v", name, args, err)
	}
	return res
}

// mcpText is a result's text, failing the test on an error result.
func mcpText(t *testing.T, res *sdk.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.IsError {
		t.Fatalf("error result: %s", b.String())
	}
	return b.String()
}

// The CLI binary over stdio, as an MCP client starts it: the session
// works, stdout carries nothing but MCP, and closing the session (end of
// input) destroys its sandboxes and exits 0.
func TestMCPStdio(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCLIHelperProcess$", "--", "mcp", "--max-output", "5000")
	cmd.Env = append(os.Environ(), "COMPUTE_CLI_HELPER=1")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	ctx, cancel := context.WithTimeout(context.Background(), cliHangGuard)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).
		Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: cliHangGuard}, nil)
	if err != nil {
		t.Fatalf("connecting to compute mcp: %v\nstderr:\n%s", err, stderr.String())
	}
	mcpText(t, mcpCall(t, cs, "run_code", map[string]any{"code": "x = 21"}))
	if got := mcpText(t, mcpCall(t, cs, "run_code", map[string]any{"code": "x * 2"})); !strings.Contains(got, "42") {
		t.Errorf("run_code x * 2: %q", got)
	}
	if got := mcpText(t, mcpCall(t, cs, "run_command", map[string]any{"command": "head -c 20000 /dev/zero | tr '\\0' x"})); !strings.Contains(got, "at most 5000 characters") {
		t.Errorf("--max-output 5000 did not cap %.200q...", got)
	}
	// No network by default.
	if got := mcpText(t, mcpCall(t, cs, "run_command", map[string]any{"command": "cat /sys/class/net/*/operstate | sort | tr '\\n' ' '; ls /sys/class/net"})); strings.Contains(got, "eth") {
		t.Errorf("the sandbox has a network interface: %q", got)
	}
	if err := cs.Close(); err != nil {
		t.Logf("closing: %v", err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("compute mcp exited %d after the end of its input; want 0\nstderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "sandboxes_destroyed=1") {
		t.Errorf("stderr does not say the session's sandbox was destroyed:\n%s", stderr.String())
	}
}

// mcpInProcess runs "compute mcp ARGS" in this process over pipes and
// returns a client session to it; the CLI's exit code comes on the
// channel once the session is closed.
func mcpInProcess(t *testing.T, args ...string) (*sdk.ClientSession, <-chan int, *syncBuffer) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	stderr := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		c := run(context.Background(), append([]string{"mcp"}, args...), inR, outW, stderr)
		outW.Close()
		inR.Close()
		code <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cliHangGuard)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).
		Connect(ctx, &sdk.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		inW.Close()
		t.Fatalf("connecting: %v (exit %d)\nstderr:\n%s", err, <-code, stderr.String())
	}
	return cs, code, stderr
}

// --provider modal with --image and --allow-images, against the Modal
// emulator: the default sandbox has --image, create_sandbox names
// another, and both are destroyed when the session ends.
func TestMCPModalImages(t *testing.T) {
	srv := modalEnv(t)
	cs, code, stderr := mcpInProcess(t, "--provider", "modal", "--image", "python:3.12-slim", "--allow-images")
	if got := mcpText(t, mcpCall(t, cs, "run_command", map[string]any{"command": "echo from-modal"})); !strings.Contains(got, "from-modal") {
		t.Errorf("run_command: %q", got)
	}
	var created struct {
		SandboxID string `json:"sandbox_id"`
	}
	res := mcpCall(t, cs, "create_sandbox", map[string]any{"image": "node:22-slim"})
	mcpText(t, res)
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &created)
	res = mcpCall(t, cs, "list_sandboxes", nil)
	var list struct {
		Sandboxes []struct {
			SandboxID string `json:"sandbox_id"`
		} `json:"sandboxes"`
	}
	b, _ = json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &list)
	if len(list.Sandboxes) != 2 {
		t.Fatalf("list_sandboxes: %s", b)
	}
	images := map[string]string{}
	for _, s := range list.Sandboxes {
		rec, ok := srv.Sandbox(s.SandboxID)
		if !ok {
			t.Fatalf("the emulator has no sandbox %s", s.SandboxID)
		}
		images[s.SandboxID] = rec.Image
	}
	if images[created.SandboxID] != "node:22-slim" || len(images) != 2 {
		t.Errorf("images %v; want the created one on node:22-slim", images)
	}
	for id, img := range images {
		if id != created.SandboxID && img != "python:3.12-slim" {
			t.Errorf("the default sandbox's image is %q; want --image python:3.12-slim", img)
		}
	}
	cs.Close()
	if c := <-code; c != 0 {
		t.Errorf("compute mcp exited %d; want 0\nstderr:\n%s", c, stderr.String())
	}
	for id := range images {
		if rec, _ := srv.Sandbox(id); rec.FinishedAt.IsZero() {
			t.Errorf("sandbox %s still runs after the session ended", id)
		}
	}
}

func TestMCPUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"mcp", "--max-output", "0"}, "--max-output"},
		{[]string{"mcp", "extra"}, "no arguments"},
		{[]string{"mcp", "--memory", "lots"}, "--memory"},
	}
	for _, tt := range tests {
		o := cli(t, "", tt.args...)
		if o.code != exitUsage || o.stdout != "" || !strings.Contains(o.stderr, tt.want) {
			t.Errorf("compute %v: exit %d, stdout %q, stderr %q; want exit 2 and a message about %s", tt.args, o.code, o.stdout, o.stderr, tt.want)
		}
	}
}

// bearerTransport adds a token to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// compute serve answers MCP at /mcp, behind its token.
func TestServeMCP(t *testing.T) {
	t.Parallel()
	const token = "serve-mcp-test-token-0123456789"
	s := startServe(t, "--token", token)
	resp, err := http.Post(s.url+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /mcp without the token: %s; want 401", resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliHangGuard)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   s.url + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token}},
	}, nil)
	if err != nil {
		t.Fatalf("connecting to %s/mcp: %v\nstderr:\n%s", s.url, err, s.stderr.String())
	}
	defer cs.Close()
	if got := mcpText(t, mcpCall(t, cs, "run_code", map[string]any{"code": "print('served', 6 * 7)"})); !strings.Contains(got, "served 42") {
		t.Errorf("run_code over compute serve: %q", got)
	}
}
