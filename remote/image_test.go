package remote_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ggcrremote "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// busyboxImage is an image of the host's static busybox (its applets as
// links) and /etc/image-marker, built here.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("skipped: no /bin/busybox on this machine (apt-get install busybox-static): image roots are tested with it")
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Skipf("skipped: /bin/busybox --list: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		h.Size = int64(len(body))
		tw.WriteHeader(h)
		tw.Write(body)
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bin)
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/image-marker", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("from the image\n"))
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// CreateOptions.Image travels from remote through the server to its
// provider: a registry image (pulled from a registry in this process) on
// a server that allows images, an OCI layout on the server's machine only
// where the server also allows local images and has a token; a server
// that allows neither refuses, saying how to allow it.
func TestImage(t *testing.T) {
	img := busyboxImage(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/busybox:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcrremote.Write(r, img); err != nil {
		t.Fatal(err)
	}
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
