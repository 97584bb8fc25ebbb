package modaltest_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"
	"go.uber.org/goleak"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// These tests drive Modal's official Go SDK, unchanged, against the
// emulator, over real gRPC, with sandboxes on the local provider.

func TestMain(m *testing.M) {
	// The SDK reads its configuration from the environment when a client
	// is made; no developer's ~/.modal.toml may leak in.
	dir, err := os.MkdirTemp("", "modaltest-")
	if err != nil {
		panic(err)
	}
	os.Setenv("MODAL_CONFIG_PATH", filepath.Join(dir, "missing.toml"))
	for _, k := range []string{"MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT", "MODAL_SANDBOX_V2", "MODAL_IMAGE_BUILDER_VERSION"} {
		os.Unsetenv(k)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// envMu guards the process environment while a client reads it.
var envMu sync.Mutex

type harness struct {
	t      *testing.T
	srv    *modaltest.Server
	client *modal.Client
	app    *modal.App
	image  *modal.Image
	ctx    context.Context
}

// newHarness starts a server and a client for it; env holds extra
// KEY=value settings for the client (MODAL_SANDBOX_V2=0, ...).
func newHarness(t *testing.T, opts modaltest.Options, env ...string) *harness {
	t.Helper()
	srv, err := modaltest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the server: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, srv: srv, ctx: ctx}
	h.client = h.newClient(srv.TokenID, srv.TokenSecret, env...)
	h.app, err = h.client.Apps.FromName(ctx, "modaltest", &modal.AppFromNameParams{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	h.image = h.client.Images.FromRegistry("python:3.13-slim", nil)
	return h
}

// newClient makes an SDK client for the harness's server with the given
// credentials. It is closed at the end of the test.
func (h *harness) newClient(tokenID, tokenSecret string, env ...string) *modal.Client {
	h.t.Helper()
	envMu.Lock()
	os.Setenv("MODAL_SERVER_URL", h.srv.URL)
	var set []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
		set = append(set, k)
	}
	c, err := modal.NewClientWithOptions(&modal.ClientParams{
		TokenID: tokenID, TokenSecret: tokenSecret,
		Logger: slog.New(slog.DiscardHandler),
	})
	os.Unsetenv("MODAL_SERVER_URL")
	for _, k := range set {
		os.Unsetenv(k)
	}
	envMu.Unlock()
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Close)
	return c
}

// create makes a sandbox that is terminated and detached at the end of
// the test.
func (h *harness) create(params *modal.SandboxCreateParams) *modal.Sandbox {
	h.t.Helper()
	sb, err := h.client.Sandboxes.Create(h.ctx, h.app, h.image, params)
	if err != nil {
		h.t.Fatalf("Sandboxes.Create: %v", err)
	}
	h.release(sb)
	return sb
}

// release terminates and detaches a sandbox handle at the end of the test.
func (h *harness) release(sb *modal.Sandbox) {
	h.t.Cleanup(func() {
		sb.Terminate(context.Background(), nil)
		sb.Detach()
	})
}

// run execs argv and returns its stdout, stderr and exit code.
func (h *harness) run(sb *modal.Sandbox, argv []string, params *modal.SandboxExecParams) (stdout, stderr string, code int) {
	h.t.Helper()
	p, err := sb.Exec(h.ctx, argv, params)
	if err != nil {
		h.t.Fatalf("Exec(%q): %v", argv, err)
	}
	return h.collect(p)
}

func (h *harness) collect(p *modal.ContainerProcess) (stdout, stderr string, code int) {
	h.t.Helper()
	var wg sync.WaitGroup
	var out, errb []byte
	var oerr, eerr error
	wg.Add(2)
	go func() { defer wg.Done(); out, oerr = readAll(p.Stdout) }()
	go func() { defer wg.Done(); errb, eerr = readAll(p.Stderr) }()
	wg.Wait()
	if oerr != nil || eerr != nil {
		h.t.Fatalf("reading output: %v, %v", oerr, eerr)
	}
	code, err := p.Wait(h.ctx, nil)
	if err != nil {
		h.t.Fatalf("Wait: %v", err)
	}
	return string(out), string(errb), code
}
