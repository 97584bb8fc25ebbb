package modaltest_test

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/internal/imagetest"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// busyboxImage is imagetest.Busybox with IMAGE_VAR=set-by-image.
func busyboxImage(t *testing.T) v1.Image { return imagetest.Busybox(t, "IMAGE_VAR=set-by-image") }

// testRegistry serves img from this process: imagetest.Serve.
func testRegistry(t *testing.T, img v1.Image) string { return imagetest.Serve(t, img) }

// logLines collects the server's log.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func imageStore(t *testing.T) *imagestore.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := imagestore.Open(dir)
	if err != nil {
		t.Skipf("skipped: no image store here: %v", err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	return st
}

// With ImageFilesPull, a registry image's sandboxes see the image's files
// (pulled once from a registry in this process), its environment, and
// nothing of the host's /usr; an image with Dockerfile commands and a
// server in ImageFilesHost mode keep running this machine's programs, and
// the log says so.
func TestImageFiles(t *testing.T) {
	ref := testRegistry(t, busyboxImage(t))
	st := imageStore(t)
	logs := &logLines{}
	h := newHarness(t, modaltest.Options{
		ImageFiles: modaltest.ImageFilesPull,
		Local:      local.Options{ImageStore: st},
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	h.image = h.client.Images.FromRegistry(ref, nil)
	sb := h.create(nil)
	out, errOut, code := h.run(sb, []string{"sh", "-c", `cat /etc/image-marker; echo "$IMAGE_VAR"; readlink /proc/$$/exe; test -e /usr/bin/python3 && echo host-usr || echo no-host-usr`}, nil)
	if code != 0 || out != "from the image\nset-by-image\n/bin/busybox\nno-host-usr\n" {
		t.Errorf("in a sandbox of %s: exit %d, stdout %q, stderr %q; want the image's files and environment", ref, code, out, errOut)
	}
	images := h.srv.Images()
	if len(images) != 1 || !strings.HasPrefix(images[0].Files, "sha256:") {
		t.Errorf("the server's images %+v; want one whose Files is the store's image id", images)
	}
	if list, _ := st.List(); len(list) != 1 {
		t.Errorf("the store holds %d images after the pull; want 1", len(list))
	}
	// A second sandbox of the same image builds nothing and pulls nothing.
	sb2 := h.create(nil)
	if out, _, _ := h.run(sb2, []string{"cat", "/etc/image-marker"}, nil); out != "from the image\n" {
		t.Errorf("second sandbox: %q", out)
	}
	if !strings.Contains(logs.String(), "the image's sandboxes see its files") {
		t.Errorf("the log does not say the image's files are used:\n%s", logs)
	}

	// ImageFilesCached uses what the store holds, without a registry.
	cached := newHarness(t, modaltest.Options{ImageFiles: modaltest.ImageFilesCached, Local: local.Options{ImageStore: st}})
	cached.image = cached.client.Images.FromRegistry(ref, nil)
	if out, _, _ := cached.run(cached.create(nil), []string{"cat", "/etc/image-marker"}, nil); out != "from the image\n" {
		t.Errorf("a sandbox of a cached image with ImageFilesCached: %q; want the image's files", out)
	}

	// Dockerfile commands: built and run on this machine's programs.
	layered := h.client.Images.FromRegistry(ref, nil).DockerfileCommands([]string{"ENV LAYER=1"}, nil)
	lsb, err := h.client.Sandboxes.Create(h.ctx, h.app, layered, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.release(lsb)
	if out, _, _ := h.run(lsb, []string{"sh", "-c", "test -e /etc/image-marker && echo image || echo host"}, nil); out != "host\n" {
		t.Errorf("a sandbox of an image with Dockerfile commands sees %q; want this machine's programs", out)
	}
	if !strings.Contains(logs.String(), "Dockerfile commands") {
		t.Errorf("the log does not say the Dockerfile image runs on this machine's programs:\n%s", logs)
	}
}

// An image the server cannot get (not in the store, and no pull allowed;
// or a registry that is not there) runs on this machine's programs, and
// the log says so; so does every image of a server in ImageFilesHost
// mode.
func TestImageFilesFallback(t *testing.T) {
	ref := testRegistry(t, busyboxImage(t))
	for _, tc := range []struct {
		name  string
		mode  modaltest.ImageFiles
		image string
		want  string
	}{
		{"cached only", modaltest.ImageFilesCached, ref, "compute image pull " + ref},
		{"unreachable registry", modaltest.ImageFilesPull, "127.0.0.1:1/nothing:v1", "files are not used"},
		{"host", modaltest.ImageFilesHost, ref, "Options.ImageFiles is host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logLines{}
			h := newHarness(t, modaltest.Options{
				ImageFiles: tc.mode,
				Local:      local.Options{ImageStore: imageStore(t)},
				Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
			})
			h.image = h.client.Images.FromRegistry(tc.image, nil)
			sb := h.create(nil)
			if out, _, code := h.run(sb, []string{"sh", "-c", "test -e /etc/image-marker && echo image || echo host"}, nil); code != 0 || out != "host\n" {
				t.Errorf("sandbox of %s: exit %d, %q; want this machine's programs", tc.image, code, out)
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("the log does not say %q:\n%s", tc.want, logs)
			}
		})
	}
}
