package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computesdk-go/compute"

	"github.com/computesdk-go/compute/computetest"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// loopback serves a local provider on a loopback port and returns a
// remote provider for it; everything is closed when the test ends.
func loopback(t *testing.T, opts server.Options) (*remote.Provider, *server.Server, *httptest.Server) {
	t.Helper()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := server.New(p, opts)
	ts := httptest.NewServer(srv)
	rp := remote.New(ts.URL, opts.Token)
	t.Cleanup(func() {
		if err := rp.Close(); err != nil {
			t.Errorf("remote Close: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		ts.Close()
		p.Close()
	})
	return rp, srv, ts
}

func TestConformance(t *testing.T) {
	rp, _, _ := loopback(t, server.Options{Token: "conformance-token", MaxSandboxes: 1000})
	computetest.Run(t, rp, computetest.RichPythonLikeHost())
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	rp, _, ts := loopback(t, server.Options{Token: "right-token", MaxSandboxes: 1})
	ctx := t.Context()
	c := compute.New(compute.Config{Provider: rp})

	wrong := remote.New(ts.URL, "wrong-token")
	defer wrong.Close()
	_, err := compute.New(compute.Config{Provider: wrong}).Create(ctx, nil)
	var re *remote.Error
	if !errors.Is(err, compute.ErrAuthentication) || !errors.As(err, &re) || re.StatusCode != 401 {
		t.Errorf("Create with a wrong token: %v; want compute.ErrAuthentication and a *remote.Error with status 401", err)
	}

	sb, err := c.Create(ctx, &compute.CreateOptions{Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, nil); !errors.Is(err, compute.ErrQuotaExceeded) {
		t.Errorf("Create past the server's MaxSandboxes: %v; want compute.ErrQuotaExceeded", err)
	}
	if _, err := c.Create(ctx, &compute.CreateOptions{Network: compute.NetworkHost}); err == nil || !strings.Contains(err.Error(), "network") {
		t.Errorf("Create with host network on a server that refuses it: %v; want an error saying so", err)
	}

	info, err := sb.Info(ctx)
	if err != nil || info.Provider != "remote" || info.Metadata["k"] != "v" || len(info.Limits) == 0 {
		t.Errorf("Info = %+v, %v; want provider remote, the metadata, the server's limits", info, err)
	}
	fsys := sb.FileSystem()
	_, err = fsys.ReadFile(ctx, "/no/such/file")
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != "/no/such/file" || pe.Op != "open" || strings.Count(err.Error(), "/no/such/file") != 1 {
		t.Errorf("ReadFile of a missing file: %v; want an *fs.PathError{open /no/such/file} matching fs.ErrNotExist, naming the path once", err)
	}
	if err := fsys.WriteFile(ctx, "f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.MkdirAll(ctx, "f"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Mkdir over a file: %v; want fs.ErrExist", err)
	}
	if _, err := sb.Start(ctx, []string{"no-such-command-xyz"}, nil); !errors.Is(err, compute.ErrCommandNotFound) {
		t.Errorf("Start of a missing command: %v; want compute.ErrCommandNotFound", err)
	}
	if _, err := sb.Run(ctx, []string{"pwd"}, &compute.RunOptions{Dir: "/no/such/dir"}); err == nil {
		t.Errorf("Run in a missing directory: nil error")
	}

	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.RunCommand(ctx, "true"); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("RunCommand in a destroyed sandbox: %v; want compute.ErrNotFound", err)
	}
	if _, err := fsys.ReadFile(ctx, "f"); !errors.Is(err, compute.ErrNotFound) || !errors.As(err, &pe) {
		t.Errorf("ReadFile in a destroyed sandbox: %v; want an *fs.PathError matching compute.ErrNotFound", err)
	}
}

func TestBadServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, u := range []string{"", "not a url", "ftp://host/", "http://"} {
		p := remote.New(u, "")
		if _, err := p.Create(ctx, nil); err == nil || !strings.Contains(err.Error(), "bad server URL") {
			t.Errorf("Create with URL %q: %v; want a bad server URL error", u, err)
		}
		p.Close()
	}
	// Nothing listens there.
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	p := remote.New(url, "")
	defer p.Close()
	if _, err := p.Create(ctx, nil); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("Create against a closed port: %v; want a connection error", err)
	}
	// Something else listens there.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot", http.StatusTeapot)
	}))
	defer other.Close()
	p2 := remote.New(other.URL, "")
	defer p2.Close()
	var re *remote.Error
	if _, err := p2.Create(ctx, nil); !errors.As(err, &re) || re.StatusCode != http.StatusTeapot || re.Message != "teapot" {
		t.Errorf("Create against another server: %v; want a *remote.Error with its status and text", err)
	}
}

// TestClose checks that Close destroys what the Provider created and did
// not destroy.
func TestClose(t *testing.T) {
	t.Parallel()
	rp, srv, ts := loopback(t, server.Options{})
	ctx := t.Context()
	own := remote.New(ts.URL, "")
	c := compute.New(compute.Config{Provider: own})
	a, _ := c.Create(ctx, nil)
	b, _ := c.Create(ctx, nil)
	if err := b.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	kept, err := compute.New(compute.Config{Provider: rp}).Create(ctx, nil)
	if err != nil || a == nil {
		t.Fatalf("Create: %v", err)
	}
	if err := own.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := c.Get(ctx, a.ID()); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Get of a sandbox after its Provider was closed: %v; want ErrNotFound", err)
	}
	if n := srv.Stats().Sandboxes; n != 1 {
		t.Errorf("the server holds %d sandboxes; want 1 (another client's)", n)
	}
	kept.Destroy(ctx)
}

// TestKillOnCancel checks that cancelling a command's context kills the
// process on the server, and that a background process survives its
// starter's context.
func TestKillOnCancel(t *testing.T) {
	t.Parallel()
	rp, srv, _ := loopback(t, server.Options{})
	ctx := t.Context()
	sb, err := compute.New(compute.Config{Provider: rp}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	p, err := sb.Start(runCtx, []string{"sleep", "60.616161"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().Processes; n != 1 {
		t.Errorf("the server runs %d processes; want 1", n)
	}
	cancel()
	res, err := p.Wait()
	if !errors.Is(err, context.Canceled) || res.ExitCode != 137 {
		t.Errorf("Wait after cancel = %+v, %v; want exit 137 and context.Canceled", res, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Processes != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.Stats().Processes; n != 0 {
		t.Errorf("the server still runs %d processes; want 0", n)
	}
}

// oom is a provider whose commands all end killed for their memory limit.
type oom struct{ driver.Provider }

type oomSandbox struct{ driver.Sandbox }

type oomProcess struct{ driver.Process }

func (o oom) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	ps, err := o.Provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	return oomSandbox{ps}, nil
}

func (s oomSandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	p, err := s.Sandbox.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return oomProcess{p}, nil
}

func (p oomProcess) Wait() (int, error) {
	p.Process.Wait()
	return 137, fmt.Errorf("command killed for going over the 1 MiB memory limit: %w", compute.ErrOutOfMemory)
}

// TestOutOfMemory checks that a command the server's provider killed for
// its memory limit is reported as such: exit 137 and
// compute.ErrOutOfMemory.
func TestOutOfMemory(t *testing.T) {
	t.Parallel()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	defer p.Close()
	srv := server.New(oom{p}, server.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	rp := remote.New(ts.URL, "")
	defer rp.Close()
	sb, err := compute.New(compute.Config{Provider: rp}).Create(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.RunCommand(t.Context(), "echo", "hi")
	if !errors.Is(err, compute.ErrOutOfMemory) || res == nil || res.ExitCode != 137 || res.Stdout != "hi\n" {
		t.Errorf("RunCommand = %+v, %v; want exit 137, the output and compute.ErrOutOfMemory", res, err)
	}
}
