package mcp_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/mcp"
)

// imageRecorder creates sandboxes without their image, recording it, so
// the tests see what create_sandbox passed on without pulling anything.
type imageRecorder struct {
	c      *compute.Compute
	mu     sync.Mutex
	images []string
}

func (r *imageRecorder) Create(ctx context.Context, opts *compute.CreateOptions) (*compute.Sandbox, error) {
	r.mu.Lock()
	r.images = append(r.images, opts.Image)
	r.mu.Unlock()
	o := *opts
	o.Image = ""
	return r.c.Create(ctx, &o)
}

func (r *imageRecorder) Destroy(ctx context.Context, sb *compute.Sandbox) error {
	if err := sb.Destroy(ctx); err != nil && !errors.Is(err, compute.ErrNotFound) {
		return err
	}
	return nil
}

func (r *imageRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.images)
}

// create_sandbox's image goes into CreateOptions.Image on every provider:
// Create's image by default, another registry image only with
// AllowImages, and never an image among the server's files.
func TestCreateSandboxImage(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		rec := &imageRecorder{c: compute.New(compute.Config{Provider: newLocal(t), NoFallback: true})}
		e := newEnv(t, &mcp.Options{Sandboxes: rec, AllowImages: allow, Create: &compute.CreateOptions{Image: "registry.example/base:1", Network: compute.NetworkNone}})
		c := e.connect()
		c.ok("run_command", map[string]any{"command": "true"}) // the default sandbox
		c.ok("create_sandbox", map[string]any{"image": "registry.example/base:1"})
		want := []string{"registry.example/base:1", "registry.example/base:1"}
		if allow {
			c.ok("create_sandbox", map[string]any{"image": "registry.example/other:2"})
			want = append(want, "registry.example/other:2")
			if got := c.ok("list_sandboxes", nil); !strings.Contains(got, "registry.example/other:2") {
				t.Errorf("list_sandboxes does not show the image: %q", got)
			}
		} else {
			c.fails("create_sandbox", map[string]any{"image": "registry.example/other:2"}, "--allow-images")
		}
		c.fails("create_sandbox", map[string]any{"image": "oci:/srv/layout"}, "files on the server's machine")
		c.fails("create_sandbox", map[string]any{"image": "docker-archive:/etc/passwd"}, "files on the server's machine")
		if got := rec.seen(); !slices.Equal(got, want) {
			t.Errorf("AllowImages %v: the images that reached the provider %q; want %q", allow, got, want)
		}
	}
}
