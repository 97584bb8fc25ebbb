package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"
)

func TestModalEmulate(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	exports := make(chan struct{})
	var stdout, stderr syncBuffer
	stdout.onWrite = func() {
		if strings.Count(stdout.String(), "export ") == 3 {
			select {
			case <-exports:
			default:
				close(exports)
			}
		}
	}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"modal", "emulate", "--latency", "1ms", "--max-sandboxes", "1", "--token-id", "ak-cli", "--token-secret", "as-cli", "--image-files", "host"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	select {
	case <-exports:
	case c := <-code:
		t.Fatalf("compute modal emulate exited %d before printing its environment:\n%s", c, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no export lines after 30s")
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		kv, ok := strings.CutPrefix(line, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 {
			t.Fatalf("not an export line: %q", line)
		}
		env[k] = v
	}
	if env["MODAL_TOKEN_ID"] != "ak-cli" || env["MODAL_TOKEN_SECRET"] != "as-cli" || !strings.HasPrefix(env["MODAL_SERVER_URL"], "http://127.0.0.1:") {
		t.Fatalf("printed environment %v", env)
	}

	// Modal's SDK, configured by exactly those variables, runs a command.
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv("MODAL_CONFIG_PATH", filepath.Join(t.TempDir(), "missing.toml"))
	client, err := modal.NewClientWithOptions(&modal.ClientParams{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	app, err := client.Apps.FromName(ctx, "cli", &modal.AppFromNameParams{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := client.Sandboxes.Create(ctx, app, client.Images.FromRegistry("alpine", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Detach()
	p, err := sb.Exec(ctx, []string{"echo", "from the emulator"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(p.Stdout)
	if string(out) != "from the emulator\n" {
		t.Errorf("exec output %q", out)
	}
	if _, err := client.Sandboxes.Create(ctx, app, client.Images.FromRegistry("alpine", nil), nil); err == nil || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Errorf("a second sandbox with --max-sandboxes 1: %v", err)
	}

	cancel() // as Ctrl-C does
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d after the interrupt, want 0; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the emulator did not stop")
	}
	if !strings.Contains(stderr.String(), "listening on") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestModalEmulateUsage(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "modal", "emulate", "--max-sandboxes", "-1")
	if o.code != exitUsage {
		t.Errorf("exit %d, want %d", o.code, exitUsage)
	}
	o.stderrContains(t, "--max-sandboxes")
	o = cli(t, "", "modal", "emulate", "--help")
	if o.code != 0 || !strings.Contains(o.stdout, "MODAL_SERVER_URL") {
		t.Errorf("--help: exit %d, %q", o.code, o.stdout)
	}
}
