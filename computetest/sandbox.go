package computetest

import (
	"maps"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

func (s *suite) testSandbox(t *testing.T) {
	t.Run("IDs", func(t *testing.T) {
		t.Parallel()
		a := s.sandbox(t, nil)
		b := s.sandbox(t, nil)
		if a.ID() == "" || b.ID() == "" {
			t.Errorf("sandbox ids %q and %q; want both non-empty", a.ID(), b.ID())
		}
		if a.ID() == b.ID() {
			t.Errorf("two sandboxes got the same id %q; want distinct ids", a.ID())
		}
		for _, sb := range []*compute.Sandbox{a, b} {
			if got, want := sb.Provider(), s.p.Name(); got != want {
				t.Errorf("Sandbox.Provider() = %q; want %q (Provider.Name())", got, want)
			}
			if got, want := sb.Driver().ID(), sb.ID(); got != want {
				t.Errorf("Driver().ID() = %q; want %q", got, want)
			}
		}
	})

	t.Run("Info", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		opts := &compute.CreateOptions{
			Name:     "computetest-info",
			Timeout:  7 * time.Minute,
			Metadata: map[string]string{"owner": "computetest", "with space": "a b=c \"d\" é"},
			Runtime:  compute.Python,
		}
		before := time.Now()
		sb := s.sandbox(t, opts)
		after := time.Now()

		// Through the Sandbox that Create returned, and through one found
		// again by id in a fresh Compute (the provider must keep the
		// metadata itself).
		again, err := compute.New(compute.Config{Provider: s.p}).Get(ctx, sb.ID())
		if err != nil {
			t.Fatalf("Get(%q): %v", sb.ID(), err)
		}
		for _, c := range []struct {
			how string
			sb  *compute.Sandbox
		}{{"created", sb}, {"from Get", again}} {
			info, err := c.sb.Info(ctx)
			if err != nil {
				t.Fatalf("Info (%s): %v", c.how, err)
			}
			if info == nil {
				t.Fatalf("Info (%s) = nil, nil", c.how)
			}
			if info.ID != sb.ID() {
				t.Errorf("Info (%s).ID = %q; want %q", c.how, info.ID, sb.ID())
			}
			if info.Provider != s.p.Name() {
				t.Errorf("Info (%s).Provider = %q; want %q", c.how, info.Provider, s.p.Name())
			}
			if info.Status != compute.StatusRunning {
				t.Errorf("Info (%s).Status = %q; want %q", c.how, info.Status, compute.StatusRunning)
			}
			// Remote clocks may be a little off; five minutes either way
			// still catches a zero, a fake or a stale time.
			const skew = 5 * time.Minute
			if info.CreatedAt.IsZero() || info.CreatedAt.Before(before.Add(-skew)) || info.CreatedAt.After(after.Add(skew)) {
				t.Errorf("Info (%s).CreatedAt = %v; want a time near %v", c.how, info.CreatedAt, before)
			}
			if info.Timeout != opts.Timeout {
				t.Errorf("Info (%s).Timeout = %v; want %v (CreateOptions.Timeout)", c.how, info.Timeout, opts.Timeout)
			}
			if info.Name != opts.Name {
				t.Errorf("Info (%s).Name = %q; want %q", c.how, info.Name, opts.Name)
			}
			if !maps.Equal(info.Metadata, opts.Metadata) {
				t.Errorf("Info (%s).Metadata = %q; want %q", c.how, info.Metadata, opts.Metadata)
			}
		}
		info, err := sb.Info(ctx)
		if err == nil && info.Runtime != compute.Python {
			t.Errorf("Info().Runtime = %q; want %q (CreateOptions.Runtime)", info.Runtime, compute.Python)
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.Status != compute.StatusRunning {
			t.Errorf("Info().Status = %q; want %q", info.Status, compute.StatusRunning)
		}
		if info.Timeout <= 0 {
			t.Errorf("Info().Timeout = %v with CreateOptions.Timeout zero; want the provider's positive default", info.Timeout)
		}
		if len(info.Metadata) != 0 {
			t.Errorf("Info().Metadata = %q; want empty", info.Metadata)
		}
	})
}
