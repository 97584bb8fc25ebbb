package modal_test

import (
	"slices"
	"strings"
	"testing"

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
