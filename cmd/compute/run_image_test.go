package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/internal/imagetest"
	"github.com/creack/pty"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// busyboxImage is imagetest.Busybox with IMAGE_VAR=set-by-image.
func busyboxImage(t *testing.T) v1.Image { return imagetest.Busybox(t, "IMAGE_VAR=set-by-image") }

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
