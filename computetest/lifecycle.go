package computetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

func (s *suite) testLifecycle(t *testing.T) {
	t.Run("GetList", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a := s.sandbox(t, nil)
		b := s.sandbox(t, nil)
		c := compute.New(compute.Config{Provider: s.p}) // knows neither

		got, err := c.Get(ctx, a.ID())
		if err != nil {
			t.Fatalf("Get(%q) from a fresh Compute: %v", a.ID(), err)
		}
		if got.ID() != a.ID() || got.Provider() != s.p.Name() {
			t.Errorf("Get(%q) = sandbox %q of provider %q; want %q of %q", a.ID(), got.ID(), got.Provider(), a.ID(), s.p.Name())
		}
		// It is the same sandbox: a file written through one is seen
		// through the other.
		writeFile(t, ctx, a.FileSystem(), "computetest-same.txt", []byte(a.ID()))
		if res := run(t, ctx, got, []string{"cat", "computetest-same.txt"}, nil); res.Stdout != a.ID() {
			t.Errorf("the sandbox from Get reads %q; want %q written through the created one", res.Stdout, a.ID())
		}

		ids := listIDs(t, ctx, c)
		for _, sb := range []*compute.Sandbox{a, b} {
			if !slices.Contains(ids, sb.ID()) {
				t.Errorf("List() = %q; want it to contain %q", ids, sb.ID())
			}
		}
		destroy(t, b)
		if ids := listIDs(t, ctx, c); slices.Contains(ids, b.ID()) {
			t.Errorf("List() after Destroy(%q) = %q; want it gone", b.ID(), ids)
		}
		if _, err := c.Get(ctx, b.ID()); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("Get of a destroyed sandbox: error %v; want one matching compute.ErrNotFound", err)
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		c := compute.New(compute.Config{Provider: s.p})
		const id = "computetest-no-such-sandbox"
		if sb, err := c.Get(ctx, id); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("Get(%q) = %v, %v; want an error matching compute.ErrNotFound", id, sb, err)
		}
		if err := c.Destroy(ctx, id); err != nil {
			t.Errorf("Destroy(%q) of an unknown id: %v; want nil", id, err)
		}
		if _, err := s.p.Get(ctx, id); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("Provider.Get(%q): error %v; want one matching compute.ErrNotFound", id, err)
		}
	})

	t.Run("Destroy", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		c := compute.New(compute.Config{Provider: s.p})
		sb, err := c.Create(ctx, nil)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { destroy(t, sb) })
		writeFile(t, ctx, sb.FileSystem(), "computetest-x.txt", []byte("x"))
		bg, err := sb.Start(context.WithoutCancel(ctx), []string{"sleep", marker()}, nil)
		if err != nil {
			t.Fatalf("Start(sleep): %v", err)
		}

		if err := sb.Destroy(ctx); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		// Destroy takes the sandbox's processes with it.
		select {
		case <-bg.Done():
		case <-time.After(killBound):
			t.Errorf("a background command still running %v after its sandbox was destroyed; want it ended", killBound)
		}
		for _, how := range []struct {
			name string
			c    *compute.Compute
		}{{"same Compute", c}, {"fresh Compute", compute.New(compute.Config{Provider: s.p})}} {
			if _, err := how.c.Get(ctx, sb.ID()); !errors.Is(err, compute.ErrNotFound) {
				t.Errorf("Get of a destroyed sandbox (%s): error %v; want one matching compute.ErrNotFound", how.name, err)
			}
		}
		if err := sb.Destroy(ctx); err != nil {
			t.Errorf("second Destroy: %v; want nil", err)
		}
		if err := c.Destroy(ctx, sb.ID()); err != nil {
			t.Errorf("Compute.Destroy of a destroyed id: %v; want nil", err)
		}
		checkGone(t, ctx, sb)
	})

	t.Run("Lifetime", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, &compute.CreateOptions{Timeout: 2 * time.Second})
		bg, err := sb.Start(context.WithoutCancel(ctx), []string{"sleep", marker()}, nil)
		if err != nil {
			t.Fatalf("Start(sleep): %v", err)
		}
		// The sandbox ends on its own when its Timeout passes; polling is
		// bounded so that one that never ends fails.
		c := compute.New(compute.Config{Provider: s.p})
		deadline := time.Now().Add(time.Minute)
		for {
			_, err := c.Get(ctx, sb.ID())
			if errors.Is(err, compute.ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatalf("Get while waiting for the sandbox's 2s lifetime to end: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("sandbox created with Timeout 2s still found a minute later; want it destroyed when its Timeout passes")
			}
			time.Sleep(250 * time.Millisecond)
		}
		select {
		case <-bg.Done():
		case <-time.After(killBound):
			t.Errorf("a background command still running %v after its sandbox's lifetime ended; want it ended", killBound)
		}
		if ids := listIDs(t, ctx, c); slices.Contains(ids, sb.ID()) {
			t.Errorf("List() = %q still has the expired sandbox %q", ids, sb.ID())
		}
		checkGone(t, ctx, sb)
	})
}

// checkGone checks that operations on a destroyed sandbox fail with an
// error that says so, instead of hanging or succeeding.
func checkGone(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	t.Helper()
	opCtx, cancel := context.WithTimeout(ctx, killBound)
	defer cancel()
	check := func(op string, err error) {
		t.Helper()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s on a destroyed sandbox hung for %v; want an error at once", op, killBound)
		case !isGone(err):
			t.Errorf("%s on a destroyed sandbox: error %v; want one matching compute.ErrNotFound or compute.ErrStopped", op, err)
		}
	}
	_, err := sb.RunCommand(opCtx, "echo", "hello")
	check("RunCommand", err)
	p, err := sb.Start(opCtx, []string{"echo", "hello"}, nil)
	if p != nil {
		p.Kill()
	}
	check("Start", err)
	_, err = sb.FileSystem().ReadFile(opCtx, "computetest-x.txt")
	check("ReadFile", err)
	err = sb.FileSystem().WriteFile(opCtx, "computetest-y.txt", []byte("y"))
	check("WriteFile", err)
	info, err := sb.Info(opCtx)
	if err == nil {
		if info.Status == compute.StatusRunning {
			t.Errorf("Info of a destroyed sandbox: Status %q, nil error; want an error or another status", info.Status)
		}
	} else {
		check("Info", err)
	}
}

func listIDs(t *testing.T, ctx context.Context, c *compute.Compute) []string {
	t.Helper()
	list, err := c.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, sb := range list {
		ids = append(ids, sb.ID())
	}
	return ids
}

func (s *suite) testConcurrency(t *testing.T) {
	t.Run("Sandboxes", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		n := s.cfg.sandboxes
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-ready
				if err := s.useSandbox(ctx, i); err != nil {
					t.Errorf("sandbox %d of %d: %v", i, n, err)
				}
			})
		}
		close(ready)
		wg.Wait()
	})

	t.Run("Commands", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		const n = 10
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				want := fmt.Sprintf("start %d\nin %d\n", i, i)
				res, err := sb.Run(ctx, []string{"/bin/sh", "-c", `echo start $CT_I; sleep 0.3; cat; echo; echo end $CT_I >&2; exit $CT_I`}, &compute.RunOptions{
					Env:   map[string]string{"CT_I": fmt.Sprint(i)},
					Stdin: strings.NewReader(fmt.Sprintf("in %d", i)),
				})
				switch {
				case err != nil:
					t.Errorf("command %d: %v", i, err)
				case res.Stdout != want || res.Stderr != fmt.Sprintf("end %d\n", i) || res.ExitCode != i:
					t.Errorf("command %d = stdout %q, stderr %q, exit %d; want %q, %q, %d", i, res.Stdout, res.Stderr, res.ExitCode, want, fmt.Sprintf("end %d\n", i), i)
				}
			})
			wg.Go(func() {
				name := fmt.Sprintf("computetest-concurrent-%d.txt", i)
				data := strings.Repeat(fmt.Sprintf("file %d\n", i), 1000+i)
				if err := sb.FileSystem().WriteFile(ctx, name, []byte(data)); err != nil {
					t.Errorf("WriteFile(%s): %v", name, err)
					return
				}
				got, err := sb.FileSystem().ReadFile(ctx, name)
				if err != nil || string(got) != data {
					t.Errorf("ReadFile(%s) = %d bytes, %v; want the %d bytes written", name, len(got), err, len(data))
				}
			})
		}
		wg.Wait()
	})
}

// useSandbox creates a sandbox, runs a command and a file round trip in
// it, destroys it and checks it is gone.
func (s *suite) useSandbox(ctx context.Context, i int) (err error) {
	c := compute.New(compute.Config{Provider: s.p})
	sb, err := c.Create(ctx, &compute.CreateOptions{Env: map[string]string{"CT_I": fmt.Sprint(i)}})
	if err != nil {
		return fmt.Errorf("Create: %w", err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			dctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
			defer cancel()
			sb.Destroy(dctx)
		}
	}()
	res, err := sb.RunShell(ctx, `echo "sandbox $CT_I"`, nil)
	if err != nil {
		return fmt.Errorf("RunShell: %w", err)
	}
	if want := fmt.Sprintf("sandbox %d\n", i); res.Stdout != want || res.ExitCode != 0 {
		return fmt.Errorf("RunShell = stdout %q, exit %d, stderr %q; want %q, 0", res.Stdout, res.ExitCode, res.Stderr, want)
	}
	data := []byte(fmt.Sprintf("file of sandbox %d (%s)", i, sb.ID()))
	if err := sb.FileSystem().WriteFile(ctx, "computetest-own.txt", data); err != nil {
		return fmt.Errorf("WriteFile: %w", err)
	}
	got, err := sb.FileSystem().ReadFile(ctx, "computetest-own.txt")
	if err != nil {
		return fmt.Errorf("ReadFile: %w", err)
	}
	if string(got) != string(data) {
		return fmt.Errorf("ReadFile = %q; want %q (sandboxes must not share files)", got, data)
	}
	if err := sb.Destroy(ctx); err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	destroyed = true
	if _, err := c.Get(ctx, sb.ID()); !errors.Is(err, compute.ErrNotFound) {
		return fmt.Errorf("Get after Destroy: error %v; want one matching compute.ErrNotFound", err)
	}
	return nil
}
