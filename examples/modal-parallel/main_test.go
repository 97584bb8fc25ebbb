package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestExample(t *testing.T) {
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	p, err := modal.New(modal.Config{
		ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret,
		Logger: slog.New(slog.DiscardHandler), Sandbox: modal.SandboxOptions{Env: map[string]string{"GORACE": "atexit_sleep_ms=0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, p, 5, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "Task task1_data.json: mean=10.") || !strings.Contains(lines[4], "count=1000") {
		t.Errorf("output:\n%s\nwant 5 tasks, the first with a mean near 10", out.String())
	}
	if n := len(srv.Sandboxes()); n != 5 {
		t.Errorf("%d sandboxes; want one per task", n)
	}
	if n := srv.CallCount("ImageGetOrCreate"); n != 1 {
		t.Errorf("the image was built %d times; want once", n)
	}
}
