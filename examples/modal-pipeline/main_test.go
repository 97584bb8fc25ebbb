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
	if err := run(ctx, p, defaultImage, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"Epoch 1, Loss:", "Epoch 10, Loss:", "Model saved!", "Model saved: true", "/ml-project/models/model.pt"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
