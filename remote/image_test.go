package remote_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/internal/imagetest"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// busyboxImage is imagetest.Busybox.
func busyboxImage(t *testing.T) v1.Image { return imagetest.Busybox(t) }

// CreateOptions.Image travels from remote through the server to its
// provider: a registry image (pulled from a registry in this process) on
// a server that allows images, an OCI layout on the server's machine only
// where the server also allows local images and has a token; a server
// that allows neither refuses, saying how to allow it.
func TestImage(t *testing.T) {
	img := busyboxImage(t)
	ref := imagetest.Serve(t, img)
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	ociRef := "oci:" + filepath.Join(dir, "layout") + ":v1"
	storeDir := filepath.Join(dir, "store")
	st, err := imagestore.Open(storeDir)
	if err != nil {
		t.Skipf("skipped: no image store here: %v", err)
	}
	t.Cleanup(func() { os.Chmod(storeDir, 0o700) })

	serve := func(opts server.Options) *remote.Provider {
		p, err := local.New(local.Options{ImageStore: st})
		if err != nil {
			t.Skipf("skipped: the local provider cannot run here: %v", err)
		}
		opts.Logger = slog.New(slog.DiscardHandler)
		srv := server.New(p, opts)
		ts := httptest.NewServer(srv)
		rp := remote.New(ts.URL, opts.Token)
		t.Cleanup(func() {
			rp.Close()
			srv.Close()
			ts.Close()
			p.Close()
		})
		return rp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	marker := func(rp *remote.Provider, image string) (string, error) {
		sb, err := compute.New(compute.Config{Provider: rp}).Create(ctx, &compute.CreateOptions{Image: image})
		if err != nil {
			return "", err
		}
		defer sb.Destroy(ctx)
		res, err := sb.RunCommand(ctx, "cat", "/etc/image-marker")
		if err != nil {
			return "", err
		}
		return res.Stdout, nil
	}

	open := serve(server.Options{Token: "image-token-0123456789", AllowImages: true, AllowLocalImages: true})
	for _, image := range []string{ref, ociRef} {
		if got, err := marker(open, image); err != nil || got != "from the image\n" {
			t.Errorf("a sandbox of %s through remote: %q, %v; want the image's files", image, got, err)
		}
	}
	closed := serve(server.Options{Token: "image-token-0123456789"})
	if _, err := marker(closed, ref); err == nil || !strings.Contains(err.Error(), "--allow-images") {
		t.Errorf("an image on a server that allows none: %v; want a refusal naming --allow-images", err)
	}
	noToken := serve(server.Options{AllowImages: true, AllowLocalImages: true})
	if _, err := marker(noToken, ociRef); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("a local image on a server without a token: %v; want a refusal about the token", err)
	}
	if got, err := marker(noToken, ref); err != nil || got != "from the image\n" {
		t.Errorf("a registry image on a server without a token that allows images: %q, %v", got, err)
	}
}
