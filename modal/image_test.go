package modal_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/internal/imagetest"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// CreateOptions.Image, the field every provider reads, names the sandbox's
// image on Modal; it wins over the provider's SandboxOptions.Image and the
// runtime's default, and local sources are refused before Modal is asked.
func TestCreateOptionsImage(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	for _, tc := range []struct {
		name     string
		provider *modal.Provider
		opts     *compute.CreateOptions
		want     string
	}{
		{"create options", p, &compute.CreateOptions{Image: "alpine:3.20"}, "alpine:3.20"},
		{"over the runtime's image", p, &compute.CreateOptions{Image: "alpine:3.20", Runtime: compute.Node}, "alpine:3.20"},
		{"over SandboxOptions.Image", p.With(modal.SandboxOptions{Image: "debian:12"}), &compute.CreateOptions{Image: "busybox:1"}, "busybox:1"},
		{"SandboxOptions.Image alone", p.With(modal.SandboxOptions{Image: "debian:12"}), nil, "debian:12"},
	} {
		sb, err := compute.New(compute.Config{Provider: tc.provider}).Create(ctx, tc.opts)
		if err != nil {
			t.Fatalf("%s: Create: %v", tc.name, err)
		}
		rec, _ := srv.Sandbox(sb.ID())
		if rec.Image != tc.want {
			t.Errorf("%s: the sandbox Modal was asked for runs %q; want %q", tc.name, rec.Image, tc.want)
		}
		if err := sb.Destroy(ctx); err != nil {
			t.Error(err)
		}
	}
	before := srv.CallCount("ImageGetOrCreate")
	for _, ref := range []string{"oci:/tmp/layout:v1", "docker-archive:/tmp/img.tar"} {
		for _, pp := range []*modal.Provider{p, p.With(modal.SandboxOptions{Image: ref})} {
			opts := &compute.CreateOptions{Image: ref}
			if pp != p {
				opts = nil
			}
			_, err := compute.New(compute.Config{Provider: pp}).Create(ctx, opts)
			if !errors.Is(err, compute.ErrUnsupported) || !strings.Contains(err.Error(), "registry") {
				t.Errorf("image %s on Modal: %v; want ErrUnsupported saying Modal needs a registry reference", ref, err)
			}
		}
	}
	if n := srv.CallCount("ImageGetOrCreate"); n != before {
		t.Errorf("refused images still reached Modal: %d ImageGetOrCreate calls", n-before)
	}
}

// busyboxImage is imagetest.Busybox.
func busyboxImage(t *testing.T) v1.Image { return imagetest.Busybox(t) }

// One CreateOptions.Image, the same files: against an emulator that pulls
// registry images (ImageFilesPull), a Modal sandbox created with
// CreateOptions.Image runs in the image's files, pulled from a registry in
// this process.
func TestCreateOptionsImageFiles(t *testing.T) {
	img := busyboxImage(t)
	ref := imagetest.Serve(t, img)
	dir := t.TempDir()
	st, err := imagestore.Open(dir)
	if err != nil {
		t.Skipf("skipped: no image store here: %v", err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	srv, p := emulator(t, modaltest.Options{ImageFiles: modaltest.ImageFilesPull, Local: local.Options{ImageStore: st}}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	res, err := sb.RunShell(ctx, "cat /etc/image-marker; test -e /usr/bin/python3 && echo host-usr || echo no-host-usr", nil)
	if err != nil || res.Stdout != "from the image\nno-host-usr\n" {
		t.Errorf("a Modal sandbox of %s on the emulator: %+v, %v; want the image's files", ref, res, err)
	}
	// Modal's file tool runs in the image too (with this machine's loader
	// and libc when the emulator's binary needs them).
	if err := sb.FileSystem().WriteFile(ctx, "/root-note.txt", []byte("written")); err != nil {
		t.Errorf("WriteFile in an image's sandbox: %v", err)
	} else if b, err := sb.FileSystem().ReadFile(ctx, "/etc/image-marker"); err != nil || string(b) != "from the image\n" {
		t.Errorf("ReadFile of the image's file: %q, %v", b, err)
	}
	// A snapshot keeps the image's files and adds the sandbox's.
	id, err := sb.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for _, im := range srv.Images() {
		// The snapshot holds what the sandbox changed; the image's own
		// files (a megabyte of busybox) stay the image's.
		if im.SnapshotBytes > 64<<10 || im.Files == "" {
			t.Errorf("image %s: %d bytes of snapshot, files of %q; want a small snapshot on the image's files", im.ID, im.SnapshotBytes, im.Files)
		}
	}
	again, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Image: id})
	if err != nil {
		t.Fatalf("Create from snapshot %s: %v", id, err)
	}
	defer again.Destroy(ctx)
	if res, err := again.RunShell(ctx, "cat /etc/image-marker /root-note.txt", nil); err != nil || res.Stdout != "from the image\nwritten" {
		t.Errorf("a sandbox of the snapshot: %+v, %v; want the image's file and the written one", res, err)
	}
	if rec, _ := srv.Sandbox(sb.ID()); rec.Image != ref {
		t.Errorf("the emulator recorded image %q; want %q", rec.Image, ref)
	}
}
