package modal_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// live holds real Modal credentials from the environment, for the tests
// against Modal itself (see live_test.go); the environment is cleared for
// the others, so that no developer setting leaks into them.
var live struct {
	tokenID, tokenSecret, serverURL, environment, gpu string
}

func TestMain(m *testing.M) {
	live.tokenID = os.Getenv("MODAL_TOKEN_ID")
	live.tokenSecret = os.Getenv("MODAL_TOKEN_SECRET")
	live.serverURL = os.Getenv("MODAL_SERVER_URL")
	live.environment = os.Getenv("MODAL_ENVIRONMENT")
	live.gpu = os.Getenv("COMPUTESDK_MODAL_GPU")
	dir, err := os.MkdirTemp("", "modal-test-")
	if err != nil {
		panic(err)
	}
	// Modal's SDK reads these when a client is made.
	os.Setenv("MODAL_CONFIG_PATH", filepath.Join(dir, "missing.toml"))
	for _, k := range []string{"MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT", "MODAL_SANDBOX_V2", "MODAL_IMAGE_BUILDER_VERSION", "MODAL_OAUTH_REFRESH_TOKEN", "MODAL_OAUTH_CLIENT_ID", "MODAL_OAUTH_CLIENT_SECRET", "MODAL_OAUTH_JWT_KEY"} {
		os.Unsetenv(k)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// quiet is the logger of the tests' providers: the emulator's expected
// warnings (no real GPU) would only be noise.
var quiet = slog.New(slog.DiscardHandler)

// emulator starts a Modal emulator and a provider for it, both closed when
// the test ends.
func emulator(t testing.TB, opts modaltest.Options, cfg modal.Config) (*modaltest.Server, *modal.Provider) {
	t.Helper()
	srv, err := modaltest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the emulator: %v", err)
		}
	})
	cfg.ServerURL = srv.URL
	if cfg.TokenID == "" {
		cfg.TokenID, cfg.TokenSecret = srv.TokenID, srv.TokenSecret
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	// The emulator runs Modal's file tool as a copy of this test binary;
	// built with -race, such a binary sleeps a second at exit unless told
	// not to (GORACE), which would make every file operation take a second.
	if raceEnabled {
		env := map[string]string{"GORACE": "atexit_sleep_ms=0"}
		for k, v := range cfg.Sandbox.Env {
			env[k] = v
		}
		cfg.Sandbox.Env = env
	}
	p, err := modal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return srv, p
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
