package compute_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
)

// One local provider serves the tests of this package.
var (
	localP   *local.Provider
	localErr error
)

func TestMain(m *testing.M) {
	localP, localErr = local.New(local.Options{})
	code := m.Run()
	if localP != nil {
		localP.Close()
	}
	os.Exit(code)
}

func localProvider(t *testing.T) *local.Provider {
	t.Helper()
	if localErr != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", localErr)
	}
	return localP
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fake is a provider that cannot create sandboxes and knows none.
type fake struct {
	name      string
	createErr error // nil means a generic failure
	getErr    error // nil means ErrNotFound
	listErr   error
	creates   atomic.Int32
}

func (f *fake) Name() string { return f.name }

func (f *fake) Create(ctx context.Context, opts *compute.CreateOptions) (compute.ProviderSandbox, error) {
	f.creates.Add(1)
	if f.createErr != nil {
		return nil, f.createErr
	}
	return nil, fmt.Errorf("%s: cannot create sandboxes", f.name)
}

func (f *fake) Get(ctx context.Context, id string) (compute.ProviderSandbox, error) {
	if f.getErr != nil {
		return nil, f.getErr
	}
	return nil, fmt.Errorf("%s: sandbox %q: %w", f.name, id, compute.ErrNotFound)
}

func (f *fake) List(ctx context.Context) ([]compute.ProviderSandbox, error) { return nil, f.listErr }

func (f *fake) Destroy(ctx context.Context, id string) error { return nil }

// counting wraps a provider, renames it and counts its creates.
type counting struct {
	compute.Provider
	name    string
	creates atomic.Int32
}

func (c *counting) Name() string {
	if c.name != "" {
		return c.name
	}
	return c.Provider.Name()
}

func (c *counting) Create(ctx context.Context, opts *compute.CreateOptions) (compute.ProviderSandbox, error) {
	c.creates.Add(1)
	return c.Provider.Create(ctx, opts)
}

func create(t *testing.T, ctx context.Context, c *compute.Compute, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	sb, err := c.Create(ctx, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	return sb
}

func TestNoProvider(t *testing.T) {
	ctx := testContext(t)
	for _, cfg := range []compute.Config{{}, {Providers: []compute.Provider{nil}}} {
		c := compute.New(cfg)
		if len(c.Providers()) != 0 {
			t.Errorf("New(%+v).Providers() = %v; want none", cfg, c.Providers())
		}
		_, err := c.Create(ctx, nil)
		check(t, "Create", err, compute.ErrNoProvider)
		_, err = c.Get(ctx, "any")
		check(t, "Get", err, compute.ErrNoProvider)
		_, err = c.List(ctx)
		check(t, "List", err, compute.ErrNoProvider)
		check(t, "Destroy", c.Destroy(ctx, "any"), compute.ErrNoProvider)
	}
}

func check(t *testing.T, op string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v; want one matching %v", op, err, want)
	}
}

func TestPackageLevel(t *testing.T) {
	p := localProvider(t)
	ctx := testContext(t)
	t.Cleanup(func() { compute.SetConfig(compute.Config{}) })

	compute.SetConfig(compute.Config{})
	_, err := compute.Create(ctx, nil)
	check(t, "Create with no provider configured", err, compute.ErrNoProvider)
	_, err = compute.Get(ctx, "any")
	check(t, "Get with no provider configured", err, compute.ErrNoProvider)
	_, err = compute.List(ctx)
	check(t, "List with no provider configured", err, compute.ErrNoProvider)
	check(t, "Destroy with no provider configured", compute.Destroy(ctx, "any"), compute.ErrNoProvider)

	compute.SetConfig(compute.Config{Provider: p})
	if d := compute.Default(); d == nil || len(d.Providers()) != 1 || d.Providers()[0] != compute.Provider(p) {
		t.Fatalf("Default() after SetConfig = %v; want a Compute with the local provider", d)
	}
	sb, err := compute.Create(ctx, &compute.CreateOptions{Name: "package-level"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	if sb.Provider() != "local" {
		t.Errorf("Provider() = %q; want local", sb.Provider())
	}
	got, err := compute.Get(ctx, sb.ID())
	if err != nil || got.ID() != sb.ID() {
		t.Fatalf("Get(%q) = %v, %v; want the sandbox", sb.ID(), got, err)
	}
	res, err := got.RunCommand(ctx, "echo", "package level")
	if err != nil || res.Stdout != "package level\n" {
		t.Errorf("RunCommand through Get = %+v, %v; want %q", res, err, "package level\n")
	}
	list, err := compute.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.ContainsFunc(list, func(s *compute.Sandbox) bool { return s.ID() == sb.ID() }) {
		t.Errorf("List() does not hold %q", sb.ID())
	}
	if err := compute.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("Destroy: %v", err)
	}
	_, err = compute.Get(ctx, sb.ID())
	check(t, "Get after Destroy", err, compute.ErrNotFound)
	if err := compute.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("second Destroy: %v; want nil", err)
	}
}

func TestProviderByName(t *testing.T) {
	p := &counting{Provider: localProvider(t)}
	other := &fake{name: "fake"}
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p, Providers: []compute.Provider{other}})

	_, err := c.Create(ctx, &compute.CreateOptions{Provider: "nope"})
	if err == nil {
		t.Fatalf("Create with Provider %q: nil error; want one naming the configured providers", "nope")
	}
	for _, want := range []string{`"nope"`, "local", "fake"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Create with an unknown provider: error %q; want it to mention %s", err, want)
		}
	}
	if n := p.creates.Load() + other.creates.Load(); n != 0 {
		t.Errorf("Create with an unknown provider called %d providers' Create; want none", n)
	}

	// Naming a provider uses it alone: no fallback to another.
	_, err = c.Create(ctx, &compute.CreateOptions{Provider: "fake"})
	if err == nil || !strings.Contains(err.Error(), "fake: cannot create") {
		t.Errorf("Create with Provider fake: error %v; want fake's own error", err)
	}
	if n := p.creates.Load(); n != 0 {
		t.Errorf("Create with Provider fake fell back to local (%d creates); want no fallback", n)
	}
	sb := create(t, ctx, c, &compute.CreateOptions{Provider: "local"})
	if sb.Provider() != "local" {
		t.Errorf("Create with Provider local: Provider() = %q", sb.Provider())
	}
}

func TestGetUnknown(t *testing.T) {
	c := compute.New(compute.Config{Provider: localProvider(t)})
	ctx := testContext(t)
	for _, id := range []string{"lsb-nosuchsandbox", "", "../etc"} {
		sb, err := c.Get(ctx, id)
		if !errors.Is(err, compute.ErrNotFound) || sb != nil {
			t.Errorf("Get(%q) = %v, %v; want nil and an error matching ErrNotFound", id, sb, err)
		}
	}
}

func TestBadCreateOptions(t *testing.T) {
	p := &counting{Provider: localProvider(t)}
	c := compute.New(compute.Config{Provider: p})
	ctx := testContext(t)
	before, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []compute.CreateOptions{
		{Timeout: -time.Second},
		{Env: map[string]string{"A=B": "x"}},
		{Env: map[string]string{"": "x"}},
		{Env: map[string]string{"NUL": "a\x00b"}},
		{Runtime: "ruby"},
		{Network: "wifi"},
		{Dir: "/tmp\x00x"},
		{NetworkAllow: []string{"example.com"}},
		{NetworkAllow: []string{"example.com:http"}},
		{NetworkAllow: []string{":443"}},
		{NetworkAllow: []string{"example.com:443"}, Network: compute.NetworkHost},
	} {
		sb, err := c.Create(ctx, &opts)
		if err == nil {
			sb.Destroy(ctx)
			t.Errorf("Create(%+v): nil error; want the options refused", opts)
		}
	}
	if n := p.creates.Load(); n != 0 {
		t.Errorf("bad options reached the provider's Create %d times; want 0", n)
	}
	after, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) > len(before) {
		t.Errorf("List() has %d sandboxes after bad creates, %d before; want none created", len(after), len(before))
	}
}

func TestFallback(t *testing.T) {
	p := localProvider(t)
	ctx := testContext(t)

	full := &fake{name: "full", createErr: fmt.Errorf("full: %w", compute.ErrQuotaExceeded)}
	c := compute.New(compute.Config{Provider: full, Providers: []compute.Provider{p}})
	sb := create(t, ctx, c, nil)
	if sb.Provider() != "local" || full.creates.Load() != 1 {
		t.Errorf("Create fell back to %q after %d tries of full; want local after 1", sb.Provider(), full.creates.Load())
	}

	c = compute.New(compute.Config{Provider: full, Providers: []compute.Provider{p}, NoFallback: true})
	_, err := c.Create(ctx, nil)
	check(t, "Create with NoFallback", err, compute.ErrQuotaExceeded)

	denied := &fake{name: "denied", createErr: fmt.Errorf("denied: %w", compute.ErrAuthentication)}
	c = compute.New(compute.Config{Provider: full, Providers: []compute.Provider{denied}})
	_, err = c.Create(ctx, nil)
	check(t, "Create when every provider fails", err, compute.ErrQuotaExceeded)
	if err != nil && (!strings.Contains(err.Error(), "full") || !strings.Contains(err.Error(), "denied")) {
		t.Errorf("Create when every provider fails: error %q; want both providers named", err)
	}

	// A cancelled create does not move on to the next provider.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	counted := &counting{Provider: p}
	c = compute.New(compute.Config{Provider: &fake{name: "slow", createErr: context.Canceled}, Providers: []compute.Provider{counted}})
	_, err = c.Create(cancelled, nil)
	check(t, "Create with a cancelled context", err, context.Canceled)
	if counted.creates.Load() != 0 {
		t.Errorf("a cancelled Create went on to the next provider")
	}
}

func TestStrategy(t *testing.T) {
	p := localProvider(t)
	ctx := testContext(t)
	a, b := &counting{Provider: p, name: "a"}, &counting{Provider: p, name: "b"}
	for _, c := range []struct {
		strategy compute.Strategy
		want     []string
	}{
		{"", []string{"a", "a", "a", "a"}},
		{compute.Priority, []string{"a", "a", "a", "a"}},
		{compute.RoundRobin, []string{"a", "b", "a", "b"}},
	} {
		cc := compute.New(compute.Config{Provider: a, Providers: []compute.Provider{b}, Strategy: c.strategy})
		var got []string
		for range c.want {
			got = append(got, create(t, ctx, cc, nil).Provider())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("strategy %q created on %q; want %q", c.strategy, got, c.want)
		}
	}
}

func TestAffinity(t *testing.T) {
	p := localProvider(t)
	ctx := testContext(t)
	flaky := &fake{name: "flaky", getErr: errors.New("flaky: get failed")}
	c := compute.New(compute.Config{Provider: flaky, Providers: []compute.Provider{p}})
	sb := create(t, ctx, c, nil) // flaky cannot create: made by local

	// The Compute that made the sandbox asks its maker first, so flaky's
	// failure does not get in the way.
	got, err := c.Get(ctx, sb.ID())
	if err != nil || got.ID() != sb.ID() || got.Provider() != "local" {
		t.Errorf("Get(%q) from the creating Compute = %v, %v; want the local sandbox", sb.ID(), got, err)
	}
	// Another Compute asks every provider in turn, passing over those that
	// do not know the id.
	other := compute.New(compute.Config{Provider: &fake{name: "other"}, Providers: []compute.Provider{p}})
	got, err = other.Get(ctx, sb.ID())
	if err != nil || got.Provider() != "local" {
		t.Errorf("Get(%q) from another Compute = %v, %v; want the local sandbox", sb.ID(), got, err)
	}
	if err := other.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("Destroy from another Compute: %v", err)
	}
	_, err = other.Get(ctx, sb.ID())
	check(t, "Get after Destroy", err, compute.ErrNotFound)
}

func TestListNamesFailingProvider(t *testing.T) {
	p := localProvider(t)
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p, Providers: []compute.Provider{&fake{name: "broken", listErr: errors.New("boom")}}})
	_, err := c.List(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("List with a failing provider: error %v; want one naming broken and its error", err)
	}
}

func TestDuplicateProviders(t *testing.T) {
	p := localProvider(t)
	c := compute.New(compute.Config{Provider: p, Providers: []compute.Provider{p, nil, &counting{Provider: p}}})
	if got := c.Providers(); len(got) != 1 || got[0] != compute.Provider(p) {
		t.Errorf("Providers() = %v; want the local provider once", got)
	}
}

func TestSandboxRefusesBadRequests(t *testing.T) {
	ctx := testContext(t)
	sb := create(t, ctx, compute.New(compute.Config{Provider: localProvider(t)}), nil)
	for _, c := range []struct {
		name string
		argv []string
		opts *compute.RunOptions
	}{
		{"no argv", nil, nil},
		{"empty program", []string{""}, nil},
		{"NUL in an argument", []string{"echo", "a\x00b"}, nil},
		{"negative timeout", []string{"true"}, &compute.RunOptions{Timeout: -time.Second}},
		{"env name with =", []string{"true"}, &compute.RunOptions{Env: map[string]string{"A=B": "c"}}},
	} {
		if res, err := sb.Run(ctx, c.argv, c.opts); err == nil {
			t.Errorf("Run with %s = %+v, nil; want an error", c.name, res)
		}
		if p, err := sb.Start(ctx, c.argv, c.opts); err == nil {
			p.Kill()
			t.Errorf("Start with %s: nil error; want an error", c.name)
		}
	}
	for _, c := range []struct {
		name string
		code string
		opts *compute.CodeOptions
	}{
		{"unknown runtime", "1", &compute.CodeOptions{Runtime: "ruby"}},
		{"NUL in the code", "print(1)\x00", nil},
		{"large code with stdin", "#" + strings.Repeat("x", 200<<10), &compute.CodeOptions{Stdin: strings.NewReader("in")}},
	} {
		if res, err := sb.RunCode(ctx, c.code, c.opts); err == nil {
			t.Errorf("RunCode with %s = %+v, nil; want an error", c.name, res)
		}
	}
	var cmd compute.Cmd
	if err := cmd.Run(); err == nil {
		t.Errorf("Run of a Cmd not made by Sandbox.Command: nil error; want an error")
	}
	if err := sb.Command("true").Wait(); err == nil {
		t.Errorf("Wait of a Cmd never started: nil error; want an error")
	}
	withStdout := sb.Command("true")
	withStdout.Stdout = os.Stdout
	if _, err := withStdout.Output(); err == nil {
		t.Errorf("Output with Stdout already set: nil error; want an error")
	}
}

// Optional abilities a provider lacks are ErrUnsupported, never a panic
// or a silent no-op.
func TestOptionalAbilitiesUnsupported(t *testing.T) {
	ctx := testContext(t)
	sb := create(t, ctx, compute.New(compute.Config{Provider: localProvider(t)}), nil)
	if _, err := sb.URL(ctx, 8080); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("URL on local: want ErrUnsupported, got %v", err)
	}
	if _, err := sb.URL(ctx, 0); err == nil || errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("URL(0): want an invalid-port error, got %v", err)
	}
	if _, err := sb.Snapshot(ctx); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("Snapshot on local: want ErrUnsupported, got %v", err)
	}
}
