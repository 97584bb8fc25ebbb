package remote_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
)

// pathLog records the paths of the requests a handler serves.
type pathLog struct {
	h     http.Handler
	mu    sync.Mutex
	paths []string
}

func (l *pathLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.paths = append(l.paths, r.Method+" "+r.URL.Path)
	l.mu.Unlock()
	l.h.ServeHTTP(w, r)
}

// count returns how many requests had a path ending in suffix.
func (l *pathLog) count(suffix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.paths {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

// TestCodeContextsNative checks that code contexts of a remote sandbox
// are the server's (the contexts endpoints, never an interpreter over an
// exec stream): another client sees and uses them, errors keep their
// kind, and destroying the sandbox ends them.
func TestCodeContextsNative(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("skipped: no python3 for a code context")
	}
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	defer p.Close()
	srv := server.New(p, server.Options{Token: "ctx-token", Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	log := &pathLog{h: srv}
	ts := httptest.NewServer(log)
	defer ts.Close()
	rp := remote.New(ts.URL, "ctx-token")
	defer rp.Close()
	other := remote.New(ts.URL, "ctx-token")
	defer other.Close()
	ctx := t.Context()

	sb, err := compute.New(compute.Config{Provider: rp}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := sb.NewCodeContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cc.Driver().(*remote.CodeContext); !ok {
		t.Errorf("CodeContext.Driver() is a %T; want *remote.CodeContext", cc.Driver())
	}
	if ex, err := cc.Run(ctx, "shared = 'yes'", nil); err != nil || ex.Error != nil {
		t.Fatalf("Run: %+v, %v", ex, err)
	}

	// Another client of the server finds the context and its state.
	sb2, err := compute.New(compute.Config{Provider: other}).Get(ctx, sb.ID())
	if err != nil {
		t.Fatal(err)
	}
	list, err := sb2.CodeContexts(ctx)
	if err != nil || len(list) != 1 || list[0].ID() != cc.ID() || list[0].Info().Version == "" {
		t.Fatalf("CodeContexts from another client = %v, %v; want the one context %s with its info", list, err, cc.ID())
	}
	var out strings.Builder
	ex, err := list[0].Run(ctx, "print(shared)\nshared", &compute.CellOptions{Stdout: &out, MaxOutput: -1})
	if err != nil || out.String() != "yes\n" || ex.Stdout != "" || len(ex.Results) != 0 {
		t.Errorf("Run from another client = %+v, %v, writer %q; want yes on the writer and nothing kept (MaxOutput -1)", ex, err, out.String())
	}

	if log.count("/exec") != 0 {
		t.Errorf("the contexts used %d exec streams; want none (the server's contexts, not the generic ones)", log.count("/exec"))
	}
	if log.count("/contexts") == 0 || log.count("/run") != 2 {
		t.Errorf("requests: %d to .../contexts, %d to .../run; want the contexts endpoints used", log.count("/contexts"), log.count("/run"))
	}

	if err := list[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Run(ctx, "1", nil); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Run of a context another client closed: %v; want compute.ErrNotFound", err)
	}
	if err := cc.Close(ctx); err != nil {
		t.Errorf("Close of a closed context: %v; want nil", err)
	}
	if err := cc.Restart(ctx); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Restart of a closed context: %v; want compute.ErrNotFound", err)
	}

	cc, err = sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: compute.Python})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Run(ctx, "1", nil); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Run in a destroyed sandbox: %v; want compute.ErrNotFound", err)
	}
}
