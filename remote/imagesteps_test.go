package remote_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"testing/fstest"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/internal/imagetest"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// CreateOptions.ImageSteps travel from remote through the server to its
// provider, on a server that allows images; a bad step is the caller's
// error (ErrInvalid) from the server too.
func TestImageSteps(t *testing.T) {
	img := busyboxImage(t)
	ref := imagetest.Serve(t, img)
	st, err := imagestore.Open(t.TempDir())
	if err != nil {
		t.Skipf("skipped: no image store here: %v", err)
	}
	p, err := local.New(local.Options{ImageStore: st})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	srv := server.New(p, server.Options{Token: "image-token-0123456789", AllowImages: true, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	rp := remote.New(ts.URL, "image-token-0123456789")
	t.Cleanup(func() {
		rp.Close()
		srv.Close()
		ts.Close()
		p.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := compute.New(compute.Config{Provider: rp})
	// The files COPY copies travel with the create.
	files := fstest.MapFS{"app/run.sh": {Data: []byte("echo copied\n"), Mode: 0o755}, "other": {Data: []byte("not sent")}}
	sb, err := c.Create(ctx, &compute.CreateOptions{Image: ref, ImageContext: files,
		ImageSteps: []string{"RUN echo built > /etc/built", "ENV GREETING=hi", "WORKDIR /srv", "COPY app ./"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	res, err := sb.RunShell(ctx, `cat /etc/built; echo "$GREETING"; pwd; ./run.sh`, nil)
	if err != nil || res.Stdout != "built\nhi\n/srv\ncopied\n" {
		t.Errorf("a sandbox with steps through remote: %+v, %v", res, err)
	}
	if _, err := c.Create(ctx, &compute.CreateOptions{Image: ref, ImageSteps: []string{"FROM x"}}); !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("a bad step through remote: %v; want ErrInvalid", err)
	}
}
