package modal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// waitFor polls cond until it holds, failing the test with what it
// waited for when ctx ends first.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("still waiting for %s: %v", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitPool waits until p's pool holds n sandboxes and returns their ids.
func waitPool(t *testing.T, ctx context.Context, p *modal.Provider, n int) []string {
	t.Helper()
	var ids []string
	waitFor(t, ctx, fmt.Sprintf("a pool of %d", n), func() bool {
		ids = modal.PooledIDs(p)
		return len(ids) == n
	})
	return ids
}

// running returns the ids of the emulator's running sandboxes.
func running(srv *modaltest.Server) []string {
	var ids []string
	for _, r := range srv.Sandboxes() {
		if r.Status == "running" {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// A Create with the default options takes a waiting sandbox (made before
// the Create began), which works, lives at least the default lifetime and
// is listed; Creates with other options get sandboxes of their own with
// those options; the pool refills; Close terminates it and nothing is left
// running.
func TestPrestart(t *testing.T) {
	t.Parallel()
	var progress syncBuffer
	srv, p := emulator(t, modaltest.Options{}, modal.Config{Prestart: 2, Progress: func(msg string) { progress.Write([]byte(msg + "\n")) }})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	pooled := waitPool(t, ctx, p, 2)
	if progress.String() != "" {
		t.Errorf("the pool's background creates reported progress, which only a waiting Create should:\n%s", progress.String())
	}
	for _, id := range pooled {
		r, _ := srv.Sandbox(id)
		if r.Tags["computesdk-pool"] != "1" || r.Tags["computesdk"] != "" {
			t.Errorf("pooled sandbox %s has tags %v; want computesdk-pool and not computesdk (List must not show it)", id, r.Tags)
		}
	}
	if sbs, err := p.List(ctx); err != nil || len(sbs) != 0 {
		t.Fatalf("List with only pooled sandboxes = %d sandboxes, %v; want none", len(sbs), err)
	}

	begun := time.Now()
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pooled, sb.ID()) {
		t.Fatalf("Create with the default options made %s; want one of the pool %v", sb.ID(), pooled)
	}
	if r, _ := srv.Sandbox(sb.ID()); !r.CreatedAt.Before(begun) {
		t.Errorf("the pooled sandbox was created at %v, after the Create began (%v)", r.CreatedAt, begun)
	}
	if res, err := sb.RunCommand(ctx, "echo", "ready"); err != nil || res.Stdout != "ready\n" {
		t.Fatalf("RunCommand in a pooled sandbox = %+v, %v", res, err)
	}
	info, err := sb.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := modal.DefaultTimeout + time.Minute; info.Timeout != want || info.Status != compute.StatusRunning {
		t.Errorf("Info of a pooled sandbox: timeout %v, status %v; want %v (the default and the minute it may wait), running", info.Timeout, info.Status, want)
	}
	sbs, err := p.List(ctx)
	if err != nil || len(sbs) != 1 || sbs[0].ID() != sb.ID() {
		t.Fatalf("List after taking %s from the pool = %v, %v; want just it", sb.ID(), sbs, err)
	}
	if r, _ := srv.Sandbox(sb.ID()); r.Tags["computesdk"] != "1" || r.Tags["computesdk-pool"] != "" {
		t.Errorf("a sandbox handed out has tags %v; want the provider's", r.Tags)
	}

	// Anything but the defaults: a sandbox of its own, with its options.
	others := []struct {
		name string
		c    *compute.Compute
		opts *compute.CreateOptions
		env  string
	}{
		{"Env", c, &compute.CreateOptions{Env: map[string]string{"X": "from-create"}}, "from-create"},
		{"Name", c, &compute.CreateOptions{Name: "named"}, ""},
		{"Timeout", c, &compute.CreateOptions{Timeout: time.Minute}, ""},
		{"With", compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{Env: map[string]string{"X": "from-with"}})}), nil, "from-with"},
	}
	var mine []*compute.Sandbox
	for _, o := range others {
		before := modal.PooledIDs(p)
		begun := time.Now()
		sb, err := o.c.Create(ctx, o.opts)
		if err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
		mine = append(mine, sb)
		r, _ := srv.Sandbox(sb.ID())
		if slices.Contains(pooled, sb.ID()) || slices.Contains(before, sb.ID()) || r.CreatedAt.Before(begun) {
			t.Errorf("%s: Create with other options than the pool's got a pooled sandbox (%s)", o.name, sb.ID())
		}
		res, err := sb.RunCommand(ctx, "sh", "-c", `printf %s "$X"`)
		if err != nil || res.Stdout != o.env {
			t.Errorf("%s: $X = %q, %v; want %q", o.name, res.Stdout, err, o.env)
		}
	}
	if !strings.Contains(progress.String(), "starting sandbox") {
		t.Errorf("Creates outside the pool reported no progress: %q", progress.String())
	}
	if info, err := mine[1].Info(ctx); err != nil || info.Name != "named" {
		t.Errorf("Info of the named sandbox = %+v, %v", info, err)
	}
	waitPool(t, ctx, p, 2)

	for _, sb := range append(mine, sb) {
		if err := sb.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if ids := running(srv); len(ids) != 0 {
		t.Errorf("after Close, running on Modal: %v; want nothing (the pool is terminated)", ids)
	}
}

// Closing a provider whose pool is still being filled terminates those
// sandboxes too, once made.
func TestPrestartCloseWhileFilling(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{Prestart: 3})
	ctx := testContext(t)
	waitFor(t, ctx, "the pool's first create", func() bool { return srv.CallCount("SandboxCreateV2") > 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if ids := running(srv); len(ids) != 0 {
		t.Errorf("after Close, running on Modal: %v; want nothing", ids)
	}
	if _, err := p.Create(ctx, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Create after Close = %v; want an error saying the provider is closed", err)
	}
}

// A pooled sandbox that ends while it waits is never handed out; the next
// Create makes a sandbox and refills the pool.
func TestPrestartSandboxEnds(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{Prestart: 1})
	ctx := testContext(t)
	dead := waitPool(t, ctx, p, 1)[0]
	other, err := p.Client().Sandboxes.FromID(ctx, dead, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Terminate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	other.Detach()
	waitPool(t, ctx, p, 0)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sb.ID() == dead {
		t.Fatalf("Create handed out %s, which had ended", dead)
	}
	if res, err := sb.RunCommand(ctx, "echo", "ok"); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("RunCommand = %+v, %v", res, err)
	}
	waitPool(t, ctx, p, 1)
	sb.Destroy(ctx)
	p.Close()
	if ids := running(srv); len(ids) != 0 {
		t.Errorf("after Close, running on Modal: %v; want nothing", ids)
	}
}

// A pooled sandbox that has waited its maximum age is terminated and
// replaced. (Not parallel: it shortens that age.)
func TestPrestartReplacesOldSandboxes(t *testing.T) {
	defer modal.SetPoolMaxAge(2 * time.Second)()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{Prestart: 1, Timeout: time.Minute})
	ctx := testContext(t)
	first := waitPool(t, ctx, p, 1)[0]
	waitFor(t, ctx, "the pooled sandbox to be replaced", func() bool {
		ids := modal.PooledIDs(p)
		return len(ids) == 1 && ids[0] != first
	})
	waitFor(t, ctx, "the old pooled sandbox to be terminated", func() bool {
		r, _ := srv.Sandbox(first)
		return r.Status != "running"
	})
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := sb.Info(ctx); err != nil || info.Timeout != time.Minute+2*time.Second {
		t.Errorf("Info = %+v, %v; want the lifetime 1m2s (the configured one and the wait)", info, err)
	}
	sb.Destroy(ctx)
	p.Close()
	if ids := running(srv); len(ids) != 0 {
		t.Errorf("after Close, running on Modal: %v; want nothing", ids)
	}
}

// Prestart's bad values and combinations are New's errors, before any
// call to Modal.
func TestPrestartConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  modal.Config
		want string
	}{
		{modal.Config{Prestart: -1}, "Prestart -1 is outside 0 to 100"},
		{modal.Config{Prestart: modal.MaxPrestart + 1}, "Prestart 101 is outside"},
		{modal.Config{Prestart: 1, Sandbox: modal.SandboxOptions{Name: "x"}}, "cannot be combined with Sandbox.Name"},
		{modal.Config{Prestart: 1, Sandbox: modal.SandboxOptions{IdleTimeout: time.Minute}}, "cannot be combined with Sandbox.IdleTimeout"},
		{modal.Config{Prestart: 1, Sandbox: modal.SandboxOptions{Workdir: "relative"}}, "must be an absolute path"},
	} {
		tc.cfg.ServerURL = "http://127.0.0.1:1"
		p, err := modal.New(tc.cfg)
		if err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded; want an error containing %q", tc.cfg, tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// syncBuffer is a log destination safe for the pool's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A pool that cannot be filled says why in the log, and a Create reports
// the failure itself, as without a pool.
func TestPrestartFailureIsReported(t *testing.T) {
	t.Parallel()
	var log syncBuffer
	_, p := emulator(t, modaltest.Options{}, modal.Config{
		Prestart: 1, TokenID: "ak-wrong", TokenSecret: "as-wrong",
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	ctx := testContext(t)
	waitFor(t, ctx, "the pool's failure in the log", func() bool {
		return strings.Contains(log.String(), "starting a prestarted sandbox failed")
	})
	if !strings.Contains(log.String(), "Modal rejected the credentials") {
		t.Errorf("the log does not say why the pool is empty:\n%s", log.String())
	}
	_, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if !errors.Is(err, compute.ErrAuthentication) {
		t.Fatalf("Create with a wrong token and a pool: %v; want compute.ErrAuthentication", err)
	}
	if ids := modal.PooledIDs(p); len(ids) != 0 {
		t.Errorf("pool %v with a wrong token", ids)
	}
}
