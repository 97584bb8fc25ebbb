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

// The example runs against the emulator: a V1 (GPU) sandbox, the check
// reports what it finds.
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
	if err := run(ctx, p, "A100:2", defaultImage, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "CUDA available:") || !strings.Contains(out.String(), "gpu A100:2") {
		t.Errorf("output:\n%s\nwant the CUDA check and the GPU in the limits", out.String())
	}
	recs := srv.Sandboxes()
	if len(recs) != 1 || recs[0].GPU != "A100:2" || recs[0].V2 || recs[0].Image != defaultImage || recs[0].Status != "terminated" {
		t.Errorf("sandboxes: %+v; want one V1 sandbox with A100:2 and the PyTorch image, destroyed", recs)
	}
}
