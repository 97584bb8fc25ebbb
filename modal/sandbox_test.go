package modal_test

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestURL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("skipped: python3 is not installed on this machine, and the emulator's sandboxes run this machine's programs")
	}
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{EncryptedPorts: []int{3000, 8080}})})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	msb := sb.Driver().(*modal.Sandbox)

	if err := sb.FileSystem().WriteFile(ctx, "/tmp/www/index.html", []byte("hello through the tunnel")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Start(ctx, []string{"python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/tmp/www"}, nil); err != nil {
		t.Fatal(err)
	}
	srv.ResetCalls()
	u3000, err := msb.URL(ctx, 3000)
	if err != nil {
		t.Fatal(err)
	}
	u8080, err := sb.URL(ctx, 8080) // the generic method reaches the same tunnel
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u8080, "https://") || u3000 == u8080 {
		t.Errorf("URL(3000) = %q, URL(8080) = %q; want two different https URLs", u3000, u8080)
	}
	if n := srv.CallCount(""); n != 0 {
		t.Errorf("URL made %d calls; want none (the create answer carries encrypted tunnels)", n)
	}
	client := srv.TunnelClient()
	defer client.CloseIdleConnections()
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get(u8080 + "/index.html")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				body = string(b)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered: %v", u8080, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body != "hello through the tunnel" {
		t.Errorf("GET through the tunnel = %q", body)
	}

	_, err = msb.URL(ctx, 9999)
	if err == nil || !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), "3000, 8080") {
		t.Errorf("URL(9999) = %v; want an error naming the exposed ports 3000, 8080", err)
	}
	// Found again by id (by another process, say): the same answers.
	again, err := compute.New(compute.Config{Provider: p}).Get(ctx, sb.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Driver().(*modal.Sandbox).URL(ctx, 9999); err == nil || !strings.Contains(err.Error(), "3000, 8080") {
		t.Errorf("URL(9999) of the sandbox from Get = %v; want the exposed ports listed", err)
	}

	plain, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Destroy(ctx)
	if _, err := plain.Driver().(*modal.Sandbox).URL(ctx, 3000); err == nil || !strings.Contains(err.Error(), "no ports") {
		t.Errorf("URL of a sandbox without ports = %v; want an error saying it exposes none", err)
	}
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	if err := sb.FileSystem().WriteFile(ctx, "/opt/state/model.txt", []byte("trained")); err != nil {
		t.Fatal(err)
	}
	id, err := sb.Driver().(*modal.Sandbox).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "im-") {
		t.Errorf("Snapshot = %q; want an image id", id)
	}
	srv.ResetCalls()
	restored, err := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{Image: id})}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Destroy(ctx)
	if n := srv.CallCount("ImageFromId") + srv.CallCount("ImageGetOrCreate"); n != 0 {
		t.Errorf("creating from the snapshot looked the image up %d times; want 0 (the provider knows it)", n)
	}
	got, err := restored.FileSystem().ReadFile(ctx, "/opt/state/model.txt")
	if err != nil || string(got) != "trained" {
		t.Errorf("the file in a sandbox from the snapshot = %q, %v; want %q", got, err, "trained")
	}
	// Another provider (another process) creates from the id too.
	_, p2 := emulatorClient(t, srv)
	again, err := compute.New(compute.Config{Provider: p2.With(modal.SandboxOptions{Image: id})}).Create(ctx, nil)
	if err != nil {
		t.Fatalf("Create from the snapshot id in another provider: %v", err)
	}
	defer again.Destroy(ctx)
	if got, err := again.FileSystem().ReadFile(ctx, "/opt/state/model.txt"); err != nil || string(got) != "trained" {
		t.Errorf("the file in another provider's sandbox from the snapshot = %q, %v", got, err)
	}
}

// emulatorClient is a second provider for a running emulator.
func emulatorClient(t testing.TB, srv *modaltest.Server) (*modaltest.Server, *modal.Provider) {
	t.Helper()
	cfg := modal.Config{ServerURL: srv.URL, TokenID: srv.TokenID, TokenSecret: srv.TokenSecret, Logger: quiet}
	if raceEnabled {
		cfg.Sandbox.Env = map[string]string{"GORACE": "atexit_sleep_ms=0"}
	}
	p, err := modal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return srv, p
}

// Images are built once per provider, the app is looked up once, and a
// sandbox asks for what the options say.
func TestCreateOptionsAndCaching(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{Secrets: map[string]map[string]string{"api-keys": {"API_KEY": "s3cret"}}}, modal.Config{
		App:  "my-app",
		Tags: map[string]string{"team": "ml"},
	})
	ctx := testContext(t)
	opts := modal.SandboxOptions{
		CPU: 2, MemoryMiB: 2048, IdleTimeout: time.Minute, Secrets: []string{"api-keys"},
		Env: map[string]string{"FROM_OPTS": "1"}, Tags: map[string]string{"job": "42"},
		UnencryptedPorts: []int{9000}, Name: "trainer",
	}
	c := compute.New(compute.Config{Provider: p.With(opts)})
	var sbs []*compute.Sandbox
	for i := range 3 {
		o := &compute.CreateOptions{Env: map[string]string{"FROM_CREATE": "2"}, Timeout: 10 * time.Minute, Dir: "/tmp", Network: compute.NetworkNone}
		pp := p.With(opts)
		if i > 0 {
			pp = p.With(modal.SandboxOptions{Env: opts.Env}) // no name: names are unique
		}
		sb, err := compute.New(compute.Config{Provider: pp}).Create(ctx, o)
		if err != nil {
			t.Fatalf("Create %d: %v", i, err)
		}
		defer sb.Destroy(ctx)
		sbs = append(sbs, sb)
	}
	_ = c
	if n := srv.CallCount("ImageGetOrCreate"); n != 1 {
		t.Errorf("ImageGetOrCreate called %d times for 3 sandboxes of one image; want 1", n)
	}
	if n := srv.CallCount("AppGetOrCreate"); n != 1 {
		t.Errorf("AppGetOrCreate called %d times; want 1", n)
	}
	rec, _ := srv.Sandbox(sbs[0].ID())
	if rec.Image != modal.DefaultPythonImage || rec.MilliCPU != 2000 || rec.MemoryMiB != 2048 || rec.IdleTimeout != time.Minute ||
		rec.Timeout != 10*time.Minute || rec.Workdir != "/tmp" || !rec.BlockNetwork || rec.Name != "trainer" ||
		rec.Tags["team"] != "ml" || rec.Tags["job"] != "42" || !slices.Equal(rec.UnencryptedPorts, []int{9000}) {
		t.Errorf("the sandbox Modal was asked for: %+v", rec)
	}
	res, err := sbs[0].RunShell(ctx, `printf '%s|%s|%s|%s' "$FROM_OPTS" "$FROM_CREATE" "$API_KEY" "$PWD"`, nil)
	if err != nil || res.Stdout != "1|2|s3cret|/tmp" {
		t.Errorf("env, secret and workdir in the sandbox = %+v, %v; want 1|2|s3cret|/tmp", res, err)
	}
	// A second sandbox with the same Modal name while the first runs is
	// refused, and says why.
	_, err = c.Create(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "unique") {
		t.Errorf("a second sandbox named %q: %v; want an error about unique names", opts.Name, err)
	}
	// Node sandboxes get the node image.
	nsb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Runtime: compute.Node})
	if err != nil {
		t.Fatal(err)
	}
	defer nsb.Destroy(ctx)
	if rec, _ := srv.Sandbox(nsb.ID()); rec.Image != modal.DefaultNodeImage {
		t.Errorf("a node sandbox's image = %q; want %q", rec.Image, modal.DefaultNodeImage)
	}
	if n := srv.CallCount("ImageGetOrCreate"); n != 2 {
		t.Errorf("ImageGetOrCreate called %d times for two images; want 2", n)
	}
}

func TestGetListInfo(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{ListPageSize: 2}, modal.Config{})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	var ids []string
	for i := range 3 {
		sb, err := c.Create(ctx, &compute.CreateOptions{Name: "box", Metadata: map[string]string{"i": fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Destroy(ctx)
		ids = append(ids, sb.ID())
	}
	// A sandbox of the same app made with Modal's SDK directly is not
	// listed: it is not this provider's.
	app, err := p.Client().Apps.FromName(ctx, modal.DefaultApp, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.Client().Sandboxes.Create(ctx, app, p.Client().Images.FromRegistry("alpine:3", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { other.Terminate(ctx, nil); other.Detach() }()

	// A fresh provider (another process): nothing cached.
	_, p2 := emulatorClient(t, srv)
	c2 := compute.New(compute.Config{Provider: p2})
	srv.ResetCalls()
	list, err := c2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sb := range list {
		got = append(got, sb.ID())
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Errorf("List = %q; want %q", got, ids)
	}
	if n := srv.CallCount("SandboxListV2"); n != 3 {
		t.Errorf("List of 3 sandboxes in pages of 2 made %d SandboxListV2 calls; want 3 (two pages and the empty one)", n)
	}
	srv.ResetCalls()
	for _, sb := range list {
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != "box" || info.Status != compute.StatusRunning || info.Timeout != modal.DefaultTimeout || info.Metadata["i"] == "" || time.Since(info.CreatedAt) > time.Minute {
			t.Errorf("Info from a listed sandbox = %+v", info)
		}
	}
	if n := srv.CallCount(""); n != 2*len(list) {
		t.Errorf("Info of %d listed sandboxes made %d calls; want 2 each (tags once, then a poll)", len(list), n)
	}
	srv.ResetCalls()
	if _, err := list[0].Info(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.CallCount(""); n != 1 {
		t.Errorf("a second Info made %d calls; want 1 (the poll)", n)
	}
	// Destroyed through one provider, gone for the other.
	if err := c.Destroy(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Get(ctx, ids[0]); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Get of a sandbox another provider destroyed: %v; want compute.ErrNotFound", err)
	}
	if err := c2.Destroy(ctx, ids[0]); err != nil {
		t.Errorf("Destroy of a destroyed sandbox: %v", err)
	}
}

// Long argument lists go through a file; merged output keeps its order.
func TestLongArgvAndMergedOutput(t *testing.T) {
	t.Parallel()
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	long := strings.Repeat("a'b\"$x `y` ", 8000) // 96 KB in one argument, with every quote
	res, err := sb.RunCommand(ctx, "printf", "%s", long)
	if err != nil || res.Stdout != long {
		t.Errorf("printf of a %d-byte argument: %d bytes back (equal %v), %v", len(long), len(res.Stdout), res.Stdout == long, err)
	}
	code := "# " + strings.Repeat("x", 80<<10) + "\nprint('long code ok')"
	if res, err := sb.RunCode(ctx, code, nil); err != nil || res.Stdout != "long code ok\n" {
		t.Errorf("RunCode of 80 KB = %+v, %v", res, err)
	}
	if res, err := sb.RunShell(ctx, "ls /tmp", nil); err != nil || strings.Contains(res.Stdout, "computesdk-argv") {
		t.Errorf("the argument file was left behind: %q, %v", res.Stdout, err)
	}
	var out strings.Builder
	cmd := sb.CommandContext(ctx, "sh", "-c", "echo 1; echo 2 >&2; echo 3; echo 4 >&2")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.String() != "1\n2\n3\n4\n" {
		t.Errorf("one writer for stdout and stderr got %q, %v; want the lines in order", out.String(), err)
	}
}

// Progress reports the slow steps of a create, once each.
func TestProgress(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var msgs []string
	_, p := emulator(t, modaltest.Options{}, modal.Config{Progress: func(m string) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	for range 2 {
		sb, err := c.Create(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		sb.Destroy(ctx)
	}
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(msgs, "\n")
	for _, want := range []string{"connecting to Modal (app computesdk)", "building image python:3.13-slim", "starting sandbox", "is running"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress:\n%s\nlacks %q", got, want)
		}
	}
	if n := strings.Count(got, "building image"); n != 1 {
		t.Errorf("progress reported %d image builds for two creates; want 1", n)
	}
}

// NetworkAllow becomes Modal's outbound allowlists (hosts, not ports).
func TestNetworkAllow(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{NetworkAllow: []string{"pypi.org:443", "10.1.2.3:5432"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	rec, _ := srv.Sandbox(sb.ID())
	if rec.Network != "allowlist" || !slices.Equal(rec.OutboundDomains, []string{"pypi.org"}) || !slices.Equal(rec.OutboundCIDRs, []string{"10.1.2.3/32"}) {
		t.Errorf("network of a sandbox with NetworkAllow: %s, domains %q, cidrs %q", rec.Network, rec.OutboundDomains, rec.OutboundCIDRs)
	}
	if _, err := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{BlockNetwork: true})}).Create(ctx, &compute.CreateOptions{NetworkAllow: []string{"pypi.org:443"}}); err == nil {
		t.Error("NetworkAllow with BlockNetwork: no error")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []modal.Config{
		{ServerURL: "ftp://example.com"},
		{ServerURL: "127.0.0.1:8080"},
		{Runtime: "ruby"},
		{Timeout: 25 * time.Hour},
		{Sandbox: modal.SandboxOptions{Env: map[string]string{"BAD-NAME": "x"}}},
	} {
		if p, err := modal.New(cfg); err == nil {
			p.Close()
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}
