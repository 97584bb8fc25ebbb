package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// imageRecorder is a provider that records the image of each create and
// refuses it, so the tests see what reached the provider without pulling.
type imageRecorder struct {
	driver.Provider
	mu     sync.Mutex
	images []string
}

func (r *imageRecorder) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	r.mu.Lock()
	r.images = append(r.images, opts.Image)
	r.mu.Unlock()
	if opts.Image == "" {
		return r.Provider.Create(ctx, opts)
	}
	return nil, fmt.Errorf("recorded image %s: %w", opts.Image, compute.ErrUnsupported)
}

func (r *imageRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.images...)
}

// A create's image reaches the provider only as far as the server's
// rules allow: registry references with AllowImages, local sources
// (files of the server's machine) only with AllowLocalImages and a token;
// both protocols, and MCP through the same registry.
func TestImagePolicy(t *testing.T) {
	t.Parallel()
	const token = "image-policy-token-0123456789"
	for _, tc := range []struct {
		name        string
		opts        server.Options
		registry    bool // a registry reference reaches the provider
		localSource bool // an oci: layout reaches the provider
		refusal     string
	}{
		{"default", server.Options{Token: token}, false, false, "--allow-images"},
		{"allow images", server.Options{Token: token, AllowImages: true}, true, false, "--allow-local-images"},
		{"allow local images", server.Options{Token: token, AllowImages: true, AllowLocalImages: true}, true, true, ""},
		{"local images without a token", server.Options{AllowImages: true, AllowLocalImages: true}, true, false, "token"},
		{"local images without AllowImages", server.Options{Token: token, AllowLocalImages: true}, false, false, "--allow-images"},
	} {
		rec := &imageRecorder{Provider: newLocal(t)}
		e := start(t, rec, tc.opts)
		for _, c := range []struct {
			image   string
			reaches bool
		}{{"127.0.0.1:5000/test:1", tc.registry}, {"oci:/srv/layout:v1", tc.localSource}, {"docker-archive:/etc/passwd", tc.localSource}} {
			before := len(rec.seen())
			if c.reaches {
				// The provider's answer comes back: 501 from the recorder.
				e.v1Err("POST", "/sandboxes", wire.CreateRequest{Image: c.image}, 501, wire.CodeUnsupported)
				if seen := rec.seen(); len(seen) != before+1 || seen[before] != c.image {
					t.Errorf("%s: image %s: the provider saw %q; want it passed on", tc.name, c.image, seen[before:])
				}
				code, m := e.seed(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"image": c.image}})
				if code != 501 || len(rec.seen()) != before+2 {
					t.Errorf("%s: seed create with image %s: %d %v; want the provider's 501", tc.name, c.image, code, m)
				}
				continue
			}
			er := e.v1Err("POST", "/sandboxes", wire.CreateRequest{Image: c.image}, 403, wire.CodeForbidden)
			if !strings.Contains(er.Error, tc.refusal) && !(tc.registry && strings.Contains(er.Error, "files on the server's machine")) {
				t.Errorf("%s: image %s refused with %q; want it to mention %q", tc.name, c.image, er.Error, tc.refusal)
			}
			code, m := e.seed(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"image": c.image}})
			if code != 403 {
				t.Errorf("%s: seed create with image %s: %d %v; want 403", tc.name, c.image, code, m)
			}
			if n := len(rec.seen()); n != before {
				t.Errorf("%s: a refused image %s reached the provider", tc.name, c.image)
			}
		}
		// Without an image, nothing changes.
		var info wire.SandboxInfo
		if code := e.v1("POST", "/sandboxes", wire.CreateRequest{}, &info); code != 201 {
			t.Errorf("%s: create without an image: %d; want 201", tc.name, code)
		}
	}
}

// With ImageRegistries, an image of another registry is refused with 403
// naming the allowed ones, before the provider sees it (nothing pulled);
// one of them passes.
func TestImageRegistries(t *testing.T) {
	t.Parallel()
	rec := &imageRecorder{Provider: newLocal(t)}
	e := start(t, rec, server.Options{Token: "image-registries-token-0123456789", AllowImages: true, ImageRegistries: []string{"ghcr.io", "docker.io"}})
	for _, image := range []string{"127.0.0.1:5000/test:1", "quay.io/org/img:v1", "evil.example/x@sha256:" + strings.Repeat("a", 64)} {
		er := e.v1Err("POST", "/sandboxes", wire.CreateRequest{Image: image}, 403, wire.CodeForbidden)
		if !strings.Contains(er.Error, "ghcr.io, index.docker.io") || !strings.Contains(er.Error, "--image-registries") {
			t.Errorf("image %s refused with %q; want the allowed registries and the flag named", image, er.Error)
		}
		code, _ := e.seed(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"image": image}})
		if code != 403 {
			t.Errorf("seed create with image %s: %d; want 403", image, code)
		}
	}
	if seen := rec.seen(); len(seen) != 0 {
		t.Errorf("refused images reached the provider: %q", seen)
	}
	for _, image := range []string{"python:3.12-slim", "ghcr.io/org/img:v1"} {
		e.v1Err("POST", "/sandboxes", wire.CreateRequest{Image: image}, 501, wire.CodeUnsupported)
	}
	if seen := rec.seen(); len(seen) != 2 {
		t.Errorf("allowed images: the provider saw %q", seen)
	}
	e.v1Err("POST", "/sandboxes", wire.CreateRequest{Image: "UPPER/Case::x"}, 400, wire.CodeBadRequest)
}
