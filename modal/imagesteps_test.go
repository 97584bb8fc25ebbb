package modal_test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// CreateOptions.ImageSteps become the image's Dockerfile commands on
// Modal, built once per provider; the emulator builds them for real.
func TestCreateOptionsImageSteps(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	steps := []string{"RUN echo built > /etc/built-by-step", "ENV GREETING=hi", "WORKDIR /srv"}
	c := compute.New(compute.Config{Provider: p})
	for i := range 2 {
		sb, err := c.Create(ctx, &compute.CreateOptions{Image: "alpine:3.20", ImageSteps: steps})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		rec, _ := srv.Sandbox(sb.ID())
		if rec.Image != "alpine:3.20" || !slices.Equal(rec.DockerfileCommands[len(rec.DockerfileCommands)-len(steps):], steps) {
			t.Errorf("Modal was asked for image %q with commands %q; want alpine:3.20 with %q", rec.Image, rec.DockerfileCommands, steps)
		}
		res, err := sb.RunShell(ctx, "cat /etc/built-by-step; echo $GREETING; pwd", nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stdout != "built\nhi\n/srv\n" {
			t.Errorf("create %d: the sandbox sees %q (stderr %q), want the steps' file, env and directory", i, res.Stdout, res.Stderr)
		}
		if err := sb.Destroy(ctx); err != nil {
			t.Error(err)
		}
	}
	if n := srv.CallCount("ImageGetOrCreate"); n > 2 {
		t.Errorf("%d ImageGetOrCreate calls for two Creates of one image with steps; want it built once (base and steps: 2)", n)
	}
	_, err := c.Create(ctx, &compute.CreateOptions{Image: "alpine:3.20", ImageSteps: []string{"COPY a /a"}})
	if err == nil || !strings.Contains(err.Error(), "COPY") {
		t.Errorf("COPY step: %v, want a refusal naming COPY", err)
	}
}

// COPY steps reach Modal as RUN steps that write the files (the SDK
// uploads no build context); the emulator builds them for real.
func TestCreateOptionsImageCopy(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	files := fstest.MapFS{
		"run.sh":       {Data: []byte("#!/bin/sh\necho 'it''s' run\n"), Mode: 0o755},
		"data":         {Mode: fs.ModeDir | 0o755}, // (the emulator restores no file into a read-only directory)
		"data/big.bin": {Data: bytes.Repeat([]byte("0123456789abcdef"), 3000), Mode: 0o600},
	}
	c := compute.New(compute.Config{Provider: p})
	sb, err := c.Create(ctx, &compute.CreateOptions{Image: "alpine:3.20", ImageContext: files, ImageSteps: []string{
		"WORKDIR /app", "COPY run.sh ./", "COPY data /data",
	}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer sb.Destroy(ctx)
	rec, _ := srv.Sandbox(sb.ID())
	for _, cmd := range rec.DockerfileCommands {
		if strings.HasPrefix(strings.ToUpper(cmd), "COPY") {
			t.Errorf("Modal was sent %q, which its SDK cannot build", cmd)
		}
	}
	res, err := sb.RunShell(ctx, "/app/run.sh; stat -c '%a %s' /app/run.sh /data/big.bin; md5sum < /data/big.bin", nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", md5.Sum(files["data/big.bin"].Data))
	if want := "its run\n755 27\n600 48000\n" + sum + "  -\n"; res.Stdout != want {
		t.Errorf("copied files: %q (stderr %q), want %q", res.Stdout, res.Stderr, want)
	}
	_, err = c.Create(ctx, &compute.CreateOptions{Image: "alpine:3.20", ImageContext: fstest.MapFS{"huge": {Data: make([]byte, modal.MaxCopyBytes+1)}}, ImageSteps: []string{"COPY huge /huge"}})
	if !errors.Is(err, compute.ErrUnsupported) || !strings.Contains(err.Error(), "COPY") {
		t.Errorf("COPY of more than MaxCopyBytes: %v, want ErrUnsupported", err)
	}
}
