package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/computesdk-go/compute/internal/imagetest"
)

// testImage is a one-layer image for this machine holding hello.txt
// and the extra entries.
func testImage(t *testing.T, content string, extra ...*tar.Header) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	io.WriteString(tw, content)
	for _, h := range extra {
		tw.WriteHeader(h)
	}
	tw.Close()
	return imagetest.Image(t, buf.Bytes())
}

// imageRegistry serves img at REGISTRY/demo:v1 from this process (plain
// HTTP on 127.0.0.1, which the store allows) and points the store at a
// fresh directory.
func imageRegistry(t *testing.T, img v1.Image) string {
	ref, _ := blockingRegistry(t, img)
	return ref
}

// blockingRegistry is imageRegistry that can hold blob downloads until
// their request ends: block() starts that, and its channel receives each
// held request.
func blockingRegistry(t *testing.T, img v1.Image) (ref string, block func() <-chan struct{}) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the image store needs Linux")
	}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var blocking atomic.Bool
	held := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blocking.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			held <- struct{}{}
			<-r.Context().Done()
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref = strings.TrimPrefix(srv.URL, "http://") + "/demo:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("COMPUTE_CACHE_DIR", dir)
	t.Cleanup(func() {
		// Unpacked layers keep their modes; make them removable.
		os.Chmod(dir, 0o700)
	})
	return ref, func() <-chan struct{} { blocking.Store(true); return held }
}

func TestImageCommands(t *testing.T) {
	img := testImage(t, "hi")
	ref := imageRegistry(t, img)
	id, _ := img.ConfigName()

	o := cli(t, "", "image", "pull", ref)
	o.check(t, 0, id.String()+"\n")
	if o.stderr != "" {
		t.Errorf("pull printed on a non-terminal stderr: %q", o.stderr)
	}
	cli(t, "", "image", "pull", ref).check(t, 0, id.String()+"\n")

	o = cli(t, "", "image", "list")
	if o.code != 0 || !strings.Contains(o.stdout, "REFERENCE") || !strings.Contains(o.stdout, ref) ||
		!strings.Contains(o.stdout, "linux/"+runtime.GOARCH) || !strings.Contains(o.stdout, shortImageID(id.String())) {
		t.Errorf("image list: exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
	o = cli(t, "", "image", "list", "--json")
	var listed []struct {
		Refs   []string
		ID     string
		Layers int
		Size   int64
	}
	if err := json.Unmarshal([]byte(o.stdout), &listed); err != nil || len(listed) != 1 || listed[0].ID != id.String() ||
		listed[0].Refs[0] != ref || listed[0].Layers != 1 || listed[0].Size != 2 {
		t.Errorf("image list --json = %s (%v)", o.stdout, err)
	}

	cli(t, "", "image", "rm", ref).check(t, 0, "removed "+ref+"\n")
	o = cli(t, "", "image", "rm", ref)
	if o.code != 1 || !strings.Contains(o.stderr, "not in the store") {
		t.Errorf("rm of a removed image: exit %d, stderr %q", o.code, o.stderr)
	}
	o = cli(t, "", "image", "list")
	if strings.Contains(o.stdout, ref) {
		t.Errorf("list after rm:\n%s", o.stdout)
	}
	// Pull again, remove by id, prune.
	cli(t, "", "image", "pull", ref).check(t, 0, id.String()+"\n")
	cli(t, "", "image", "rm", shortImageID(id.String())).check(t, 0, "removed "+shortImageID(id.String())+"\n")
	cli(t, "", "image", "prune").check(t, 0, "removed 0 images and 0 layers, 0 B\n")
}

func TestImageErrors(t *testing.T) {
	ref := imageRegistry(t, testImage(t, "x"))
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"image", "pull"}, exitUsage, "wants one image reference"},
		{[]string{"image", "pull", "https://example.com/x"}, exitFailure, "is a URL"},
		{[]string{"image", "pull", ref, "--platform", "linux/mips64le"}, exitFailure, "not linux/mips64le"},
		{[]string{"image", "pull", ref, "--platform", "nonsense"}, exitFailure, "is not os/arch"},
		{[]string{"image", "pull", ref, "--max-size", "lots"}, exitUsage, "--max-size"},
		{[]string{"image", "pull", strings.Replace(ref, "demo", "missing", 1)}, exitFailure, "missing:v1"},
		{[]string{"image", "pull", "oci:/nonexistent/layout"}, exitFailure, "not an OCI layout"},
		{[]string{"image", "rm"}, exitUsage, "wants one or more"},
		{[]string{"image", "list", "extra"}, exitUsage, "takes no arguments"},
	} {
		o := cli(t, "", tt.args...)
		if o.code != tt.code || !strings.Contains(o.stderr, tt.msg) {
			t.Errorf("compute %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), o.code, o.stderr, tt.code, tt.msg)
		}
	}
	// The platform error names what the image has.
	o := cli(t, "", "image", "pull", ref, "--platform", "linux/mips64le")
	if !strings.Contains(o.stderr, "linux/"+runtime.GOARCH) {
		t.Errorf("stderr %q does not name the image's platform", o.stderr)
	}
}

// TestImagePullProgressOnTerminal gives the CLI a terminal as its stderr:
// the progress bar shows there, and stdout still has only the id.
func TestImagePullProgressOnTerminal(t *testing.T) {
	img := testImage(t, strings.Repeat("progress ", 1000))
	ref := imageRegistry(t, img)
	ptm, pts, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	got := make(chan string)
	go func() {
		var buf bytes.Buffer
		io.Copy(&buf, ptm) // ends when pts closes (EIO)
		got <- buf.String()
	}()
	var stdout syncBuffer
	code := run(t.Context(), []string{"image", "pull", ref}, strings.NewReader(""), &stdout, pts)
	pts.Close()
	var term string
	select {
	case term = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output never ended")
	}
	id, _ := img.ConfigName()
	if code != 0 || stdout.String() != id.String()+"\n" {
		t.Errorf("exit %d, stdout %q", code, stdout.String())
	}
	if !strings.Contains(term, "pulling "+ref) || !strings.Contains(term, "1/1 layers") || !strings.Contains(term, "[====") {
		t.Errorf("the terminal shows %q; want a progress bar", term)
	}
}

func TestImagePullNotes(t *testing.T) {
	img := testImage(t, "x",
		&tar.Header{Name: "dev/kmem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 2, Mode: 0o600},
		&tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4755})
	ref := imageRegistry(t, img)
	o := cli(t, "", "image", "pull", ref)
	id, _ := img.ConfigName()
	o.check(t, 0, id.String()+"\n")
	for _, want := range []string{"compute: note: " + ref + ": skipped device node dev/kmem (1:2)", "cleared the setuid/setgid bits of bin/su"} {
		o.stderrContains(t, want)
	}
	if strings.Contains(o.stderr, "\x1b") {
		t.Errorf("terminal escapes on a non-terminal stderr: %q", o.stderr)
	}
}

// TestImagePullInterrupted: Ctrl-C in the middle of a download exits 130
// and keeps nothing.
func TestImagePullInterrupted(t *testing.T) {
	ref, block := blockingRegistry(t, testImage(t, "x"))
	held := block()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		select {
		case <-held:
		case <-time.After(time.Minute): // hang guard: the pull below then fails on its own
		}
		cancel()
	}()
	var stdout, stderr syncBuffer
	code := run(ctx, []string{"image", "pull", ref}, strings.NewReader(""), &stdout, &stderr)
	if code != exitInterrupted || stdout.String() != "" || !strings.Contains(stderr.String(), "interrupted; nothing half-made was kept") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and a note", code, stdout.String(), stderr.String(), exitInterrupted)
	}
	o := cli(t, "", "image", "list", "--json")
	o.check(t, 0, "[]\n")
}
