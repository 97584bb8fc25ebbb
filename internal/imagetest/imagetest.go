// Package imagetest builds OCI images for tests and serves them from an
// in-process registry, so image tests need no internet.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Marker is the content of /etc/image-marker in a Busybox image.
const Marker = "from the image\n"

// Busybox returns a one-layer image of the host's static busybox (its
// applets as links in /bin) and /etc/image-marker, for this machine's
// architecture, with PATH=/bin and env in its config. It skips t where
// the host has no /bin/busybox (Debian's busybox-static).
func Busybox(t testing.TB, env ...string) v1.Image {
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
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bin)
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/image-marker", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(Marker))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return Image(t, buf.Bytes(), append([]string{"PATH=/bin"}, env...)...)
}

// Image is a one-layer image for this machine (linux, this GOARCH) whose
// layer is the tar stream layer, with env added to its configuration's
// environment.
func Image(t testing.TB, layer []byte, env ...string) v1.Image {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = append(cf.Config.Env, env...)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// Serve pushes img to a registry served from this process (plain HTTP on
// 127.0.0.1, closed when t ends) and returns its reference,
// "127.0.0.1:PORT/busybox:v1".
func Serve(t testing.TB, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/busybox:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}
