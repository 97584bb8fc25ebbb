package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
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
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = []string{"PATH=/bin", "IMAGE_VAR=set-by-image"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// --image on run, exec, shell and mcp with the local provider: the
// sandbox's root is the image, pulled from a registry in this process
// into the store ($COMPUTE_CACHE_DIR) on first use.
func TestImageFlag(t *testing.T) {
	ref := imageRegistry(t, busyboxImage(t)) // sets COMPUTE_CACHE_DIR
	probe := `cat /etc/image-marker; echo "$IMAGE_VAR"; test -e /usr/bin/python3 && echo host-usr || echo no-host-usr`
	want := "from the image\nset-by-image\nno-host-usr\n"

	o := cli(t, "", "exec", "--image", ref, "--", "sh", "-c", probe)
	o.check(t, 0, want)
	if o.stderr != "" {
		t.Errorf("exec --image printed on a non-terminal stderr: %q", o.stderr)
	}
	if o := cli(t, "", "image", "list"); o.code != 0 || !strings.Contains(o.stdout, ref) {
		t.Errorf("image list after exec --image: exit %d, %q; want the pulled image", o.code, o.stdout)
	}
	// Without a terminal, shell runs the script on standard input.
	cli(t, probe, "shell", "--image", ref).check(t, 0, want)
	// The image has no Python: run says so (127), from inside the image.
	o = cli(t, "", "run", "--image", ref, "-c", "print(1)")
	if o.code != exitNotFound || !strings.Contains(o.stderr, "python3") {
		t.Errorf("run --image of an image without Python: exit %d, stderr %q; want %d and a word about python3", o.code, o.stderr, exitNotFound)
	}
	// An image that is nowhere: a clear error, no sandbox.
	o = cli(t, "", "exec", "--image", strings.Replace(ref, "demo:v1", "missing:v1", 1), "--", "true")
	if o.code == 0 || !strings.Contains(o.stderr, "missing:v1") {
		t.Errorf("exec --image of a missing image: exit %d, stderr %q; want a failure naming it", o.code, o.stderr)
	}

	// mcp: --image is every sandbox's; the agent may name another only
	// with --allow-images.
	cs, code, stderr := mcpInProcess(t, "--image", ref)
	if got := mcpText(t, mcpCall(t, cs, "run_command", map[string]any{"command": probe})); !strings.Contains(got, "from the image") || !strings.Contains(got, "no-host-usr") {
		t.Errorf("mcp --image: run_command in the default sandbox: %q", got)
	}
	res := mcpCall(t, cs, "create_sandbox", map[string]any{"image": "other.example/img:1"})
	var msg strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			msg.WriteString(tc.Text)
		}
	}
	if !res.IsError || !strings.Contains(msg.String(), "--allow-images") {
		t.Errorf("create_sandbox with another image without --allow-images: %q; want a refusal naming --allow-images", msg.String())
	}
	cs.Close()
	if c := <-code; c != 0 {
		t.Errorf("compute mcp exited %d\nstderr:\n%s", c, stderr.String())
	}
}

// On a terminal, exec --image with an image the store lacks shows the
// pull's progress on stderr before the sandbox runs; stdout has only the
// program's output.
func TestImageFlagProgressOnTerminal(t *testing.T) {
	ref := imageRegistry(t, busyboxImage(t))
	ptm, pts, err := pty.Open()
	if err != nil {
		t.Skipf("skipped: no pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	got := make(chan string)
	go func() {
		var buf bytes.Buffer
		io.Copy(&buf, ptm) // ends when pts closes (EIO)
		got <- buf.String()
	}()
	var stdout syncBuffer
	code := run(t.Context(), []string{"exec", "--image", ref, "--", "cat", "/etc/image-marker"}, strings.NewReader(""), &stdout, pts)
	pts.Close()
	var term string
	select {
	case term = <-got:
	case <-time.After(cliHangGuard):
		t.Fatal("the terminal's output never ended")
	}
	if code != 0 || stdout.String() != "from the image\n" {
		t.Errorf("exit %d, stdout %q; want 0 and the image's file", code, stdout.String())
	}
	if !strings.Contains(term, "pulling "+ref) || !strings.Contains(term, "1/1 layers") {
		t.Errorf("the terminal shows %q; want the pull's progress", term)
	}
}
