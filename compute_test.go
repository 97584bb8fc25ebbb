package compute_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
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
	for _, cfg := range []compute.Config{{}, {Providers: []driver.Provider{nil}}} {
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
	p := newFake("fake")
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
	if d := compute.Default(); d == nil || len(d.Providers()) != 1 || d.Providers()[0] != driver.Provider(p) {
		t.Fatalf("Default() after SetConfig = %v; want a Compute with the fake provider", d)
	}
	sb, err := compute.Create(ctx, &compute.CreateOptions{Name: "package-level"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { sb.Destroy(context.Background()) })
	if sb.Provider() != "fake" || p.creates.Load() != 1 {
		t.Errorf("Provider() = %q after %d creates of the fake; want fake after 1", sb.Provider(), p.creates.Load())
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
	if len(list) != 1 || list[0].ID() != sb.ID() {
		t.Errorf("List() = %v; want just %q", list, sb.ID())
	}
	if err := compute.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("Destroy: %v", err)
	}
	if n := p.live(); n != 0 {
		t.Errorf("the provider holds %d sandboxes after Destroy; want 0", n)
	}
	_, err = compute.Get(ctx, sb.ID())
	check(t, "Get after Destroy", err, compute.ErrNotFound)
	if err := compute.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("second Destroy: %v; want nil", err)
	}
}

func TestProviderByName(t *testing.T) {
	p := newFake("good")
	other := failing("broken", errors.New("broken: cannot create sandboxes"))
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p, Providers: []driver.Provider{other}})

	_, err := c.Create(ctx, &compute.CreateOptions{Provider: "nope"})
	if err == nil {
		t.Fatalf("Create with Provider %q: nil error; want one naming the configured providers", "nope")
	}
	for _, want := range []string{`"nope"`, "good", "broken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Create with an unknown provider: error %q; want it to mention %s", err, want)
		}
	}
	if n := p.creates.Load() + other.creates.Load(); n != 0 {
		t.Errorf("Create with an unknown provider called %d providers' Create; want none", n)
	}

	// Naming a provider uses it alone: no fallback to another.
	_, err = c.Create(ctx, &compute.CreateOptions{Provider: "broken"})
	if err == nil || !strings.Contains(err.Error(), "broken: cannot create") {
		t.Errorf("Create with Provider broken: error %v; want broken's own error", err)
	}
	if n := p.creates.Load(); n != 0 {
		t.Errorf("Create with Provider broken fell back to good (%d creates); want no fallback", n)
	}
	sb := create(t, ctx, c, &compute.CreateOptions{Provider: "good"})
	if sb.Provider() != "good" || p.live() != 1 {
		t.Errorf("Create with Provider good: Provider() = %q, good holds %d sandboxes; want good, 1", sb.Provider(), p.live())
	}
}

func TestGetUnknown(t *testing.T) {
	p := newFake("fake")
	c := compute.New(compute.Config{Provider: p})
	ctx := testContext(t)
	create(t, ctx, c, nil) // a sandbox that exists, so Get has something to miss
	for _, id := range []string{"fake-nosuchsandbox", "", "../etc"} {
		sb, err := c.Get(ctx, id)
		if !errors.Is(err, compute.ErrNotFound) || sb != nil {
			t.Errorf("Get(%q) = %v, %v; want nil and an error matching ErrNotFound", id, sb, err)
		}
	}
}

func TestBadCreateOptions(t *testing.T) {
	p := newFake("fake")
	c := compute.New(compute.Config{Provider: p})
	ctx := testContext(t)
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
	if n := p.live(); n != 0 {
		t.Errorf("the provider holds %d sandboxes after bad creates; want none created", n)
	}
	// The same Compute still creates with good options.
	create(t, ctx, c, &compute.CreateOptions{Env: map[string]string{"A": "B"}, NetworkAllow: []string{"example.com:443"}})
}

func TestFallback(t *testing.T) {
	p := newFake("good")
	ctx := testContext(t)

	full := failing("full", fmt.Errorf("full: %w", compute.ErrQuotaExceeded))
	c := compute.New(compute.Config{Provider: full, Providers: []driver.Provider{p}})
	sb := create(t, ctx, c, nil)
	if sb.Provider() != "good" || full.creates.Load() != 1 || p.creates.Load() != 1 {
		t.Errorf("Create fell back to %q after %d tries of full (%d of good); want good after 1 (1)", sb.Provider(), full.creates.Load(), p.creates.Load())
	}

	c = compute.New(compute.Config{Provider: full, Providers: []driver.Provider{p}, NoFallback: true})
	_, err := c.Create(ctx, nil)
	check(t, "Create with NoFallback", err, compute.ErrQuotaExceeded)
	if n := p.creates.Load(); n != 1 {
		t.Errorf("Create with NoFallback reached the second provider (%d creates); want it untried", n-1)
	}

	denied := failing("denied", fmt.Errorf("denied: %w", compute.ErrAuthentication))
	c = compute.New(compute.Config{Provider: full, Providers: []driver.Provider{denied}})
	_, err = c.Create(ctx, nil)
	check(t, "Create when every provider fails", err, compute.ErrQuotaExceeded)
	if err != nil && (!strings.Contains(err.Error(), "full") || !strings.Contains(err.Error(), "denied")) {
		t.Errorf("Create when every provider fails: error %q; want both providers named", err)
	}

	// A cancelled create does not move on to the next provider.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	next := newFake("next")
	c = compute.New(compute.Config{Provider: failing("slow", context.Canceled), Providers: []driver.Provider{next}})
	_, err = c.Create(cancelled, nil)
	check(t, "Create with a cancelled context", err, context.Canceled)
	if next.creates.Load() != 0 {
		t.Errorf("a cancelled Create went on to the next provider")
	}

	// Fallback is for Create only: a command that fails on the sandbox's
	// provider is not run again elsewhere.
	other := newFake("other")
	c = compute.New(compute.Config{Provider: p, Providers: []driver.Provider{other}})
	sb = create(t, ctx, c, nil)
	res, err := sb.RunCommand(ctx, "no-such-program")
	if err != nil || res.ExitCode != compute.ExitCodeNotFound {
		t.Errorf("RunCommand of a missing program = %+v, %v; want exit code %d", res, err, compute.ExitCodeNotFound)
	}
	if other.starts.Load() != 0 || other.creates.Load() != 0 {
		t.Errorf("a failed command reached another provider (%d starts, %d creates); want none", other.starts.Load(), other.creates.Load())
	}
}

func TestStrategy(t *testing.T) {
	ctx := testContext(t)
	for _, c := range []struct {
		strategy compute.Strategy
		want     []string
	}{
		{"", []string{"a", "a", "a", "a"}},
		{compute.Priority, []string{"a", "a", "a", "a"}},
		{compute.RoundRobin, []string{"a", "b", "a", "b"}},
	} {
		a, b := newFake("a"), newFake("b")
		cc := compute.New(compute.Config{Provider: a, Providers: []driver.Provider{b}, Strategy: c.strategy})
		var got []string
		for range c.want {
			got = append(got, create(t, ctx, cc, nil).Provider())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("strategy %q created on %q; want %q", c.strategy, got, c.want)
		}
		// Provider() is the name of the provider that really holds it.
		if n := a.live() + b.live(); n != len(c.want) {
			t.Errorf("strategy %q: the providers hold %d sandboxes; want %d", c.strategy, n, len(c.want))
		}
	}

	// Round-robin moves on past a failing provider and keeps turning.
	down := failing("down", errors.New("down"))
	up := newFake("up")
	cc := compute.New(compute.Config{Provider: down, Providers: []driver.Provider{up}, Strategy: compute.RoundRobin})
	for i := range 4 {
		if sb := create(t, ctx, cc, nil); sb.Provider() != "up" {
			t.Errorf("round-robin create %d on %q; want up", i, sb.Provider())
		}
	}
	if n := down.creates.Load(); n != 2 {
		t.Errorf("round-robin tried the failing provider %d times in 4 creates; want 2 (every other one starts there)", n)
	}
}

func TestAffinity(t *testing.T) {
	p := newFake("good")
	ctx := testContext(t)
	flaky := failing("flaky", errors.New("flaky: cannot create"))
	flaky.getErr = errors.New("flaky: get failed")
	c := compute.New(compute.Config{Provider: flaky, Providers: []driver.Provider{p}})
	sb := create(t, ctx, c, nil) // flaky cannot create: made by good

	// The Compute that made the sandbox asks its maker first, so flaky's
	// failure does not get in the way, and flaky is not asked at all.
	got, err := c.Get(ctx, sb.ID())
	if err != nil || got.ID() != sb.ID() || got.Provider() != "good" {
		t.Errorf("Get(%q) from the creating Compute = %v, %v; want the good sandbox", sb.ID(), got, err)
	}
	if n := flaky.gets.Load(); n != 0 {
		t.Errorf("Get from the creating Compute asked flaky %d times; want 0 (the maker first)", n)
	}
	// The sandbox from Get is the same one: a file written through it is
	// seen through the first handle.
	if err := got.FileSystem().WriteFile(ctx, "mark", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.FileSystem().Exists(ctx, "mark"); !ok || err != nil {
		t.Errorf("Exists through the created handle = %v, %v; want the file written through Get's", ok, err)
	}

	// Another Compute asks every provider in turn, passing over those that
	// do not know the id.
	other := compute.New(compute.Config{Provider: newFake("other"), Providers: []driver.Provider{p}})
	got, err = other.Get(ctx, sb.ID())
	if err != nil || got.Provider() != "good" {
		t.Errorf("Get(%q) from another Compute = %v, %v; want the good sandbox", sb.ID(), got, err)
	}
	// A provider that fails to look up (not "not found") stops Get: the
	// sandbox may be its, so the error is not hidden.
	unsure := compute.New(compute.Config{Provider: flaky, Providers: []driver.Provider{p}})
	if _, err := unsure.Get(ctx, sb.ID()); err == nil || !strings.Contains(err.Error(), "flaky: get failed") {
		t.Errorf("Get through a Compute that did not make it, flaky first: %v; want flaky's error", err)
	}

	if err := other.Destroy(ctx, sb.ID()); err != nil {
		t.Errorf("Destroy from another Compute: %v", err)
	}
	if n := p.live(); n != 0 {
		t.Errorf("good holds %d sandboxes after Destroy from another Compute; want 0", n)
	}
	_, err = other.Get(ctx, sb.ID())
	check(t, "Get after Destroy", err, compute.ErrNotFound)
	// The creating Compute asks the maker, which says it is gone: flaky's
	// failure is not reported for an id that was never flaky's.
	_, err = c.Get(ctx, sb.ID())
	check(t, "Get after Destroy from the creating Compute", err, compute.ErrNotFound)
}

func TestListNamesFailingProvider(t *testing.T) {
	ctx := testContext(t)
	broken := newFake("broken")
	broken.listErr = errors.New("boom")
	c := compute.New(compute.Config{Provider: newFake("good"), Providers: []driver.Provider{broken}})
	_, err := c.List(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("List with a failing provider: error %v; want one naming broken and its error", err)
	}
}

func TestListEveryProvider(t *testing.T) {
	ctx := testContext(t)
	a, b := newFake("a"), newFake("b")
	c := compute.New(compute.Config{Provider: a, Providers: []driver.Provider{b}, Strategy: compute.RoundRobin})
	want := []string{create(t, ctx, c, nil).ID(), create(t, ctx, c, nil).ID(), create(t, ctx, c, nil).ID()}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sb := range list {
		got = append(got, sb.ID())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List() = %q; want %q (both providers' sandboxes)", got, want)
	}
}

func TestDuplicateProviders(t *testing.T) {
	p := newFake("fake")
	c := compute.New(compute.Config{Provider: p, Providers: []driver.Provider{p, nil, newFake("fake")}})
	if got := c.Providers(); len(got) != 1 || got[0] != driver.Provider(p) {
		t.Errorf("Providers() = %v; want the first fake once", got)
	}
}

func TestSandboxRefusesBadRequests(t *testing.T) {
	ctx := testContext(t)
	p := newFake("fake")
	sb := create(t, ctx, compute.New(compute.Config{Provider: p}), nil)
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
	if n := p.starts.Load(); n != 0 {
		t.Errorf("bad requests reached the provider's Start %d times; want 0", n)
	}
}

// Optional abilities a provider lacks are ErrUnsupported, never a panic
// or a silent no-op.
func TestOptionalAbilitiesUnsupported(t *testing.T) {
	ctx := testContext(t)
	sb := create(t, ctx, compute.New(compute.Config{Provider: newFake("fake")}), nil)
	if _, err := sb.URL(ctx, 8080); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("URL on a provider without driver.URLer: want ErrUnsupported, got %v", err)
	}
	if _, err := sb.URL(ctx, 0); err == nil || errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("URL(0): want an invalid-port error, got %v", err)
	}
	if _, err := sb.Snapshot(ctx); !errors.Is(err, compute.ErrUnsupported) {
		t.Errorf("Snapshot on a provider without Snapshotter: want ErrUnsupported, got %v", err)
	}
}
