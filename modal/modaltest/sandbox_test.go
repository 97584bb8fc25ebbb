package modaltest_test

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/modal/modaltest"
)

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

var (
	v1ID = regexp.MustCompile(`^sb-[0-9A-Za-z]{22}$`)
	v2ID = regexp.MustCompile(`^sb-[0-7][0-9A-HJKMNP-TV-Z]{25}$`)
)

func TestCreateV2(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{
		CPU: 0.5, MemoryMiB: 256, Timeout: time.Minute, Tags: map[string]string{"team": "a"},
		Env: map[string]string{"GREETING": "hi"},
	})
	if !v2ID.MatchString(sb.SandboxID) {
		t.Errorf("V2 sandbox id %q does not look like sb-<ULID>", sb.SandboxID)
	}
	out, _, code := h.run(sb, []string{"sh", "-c", "echo $GREETING"}, nil)
	if out != "hi\n" || code != 0 {
		t.Errorf("echo $GREETING: got %q, exit %d; want \"hi\\n\", exit 0", out, code)
	}
	rec, ok := h.srv.Sandbox(sb.SandboxID)
	if !ok {
		t.Fatal("no record of the sandbox")
	}
	if !rec.V2 || rec.Image != "python:3.13-slim" || rec.MilliCPU != 500 || rec.MemoryMiB != 256 ||
		rec.Timeout != time.Minute || rec.Tags["team"] != "a" || rec.Env["GREETING"] != "hi" || rec.Status != "running" {
		t.Errorf("record = %+v", rec)
	}
	if n := h.srv.CallCount("SandboxCreateV2"); n != 1 {
		t.Errorf("SandboxCreateV2 calls = %d, want 1", n)
	}
	// The V2 create response carries the task id and router access, so the
	// exec needed no lookups.
	for _, m := range []string{"SandboxGetTaskIdV2", "SandboxGetCommandRouterAccess", "SandboxCreate"} {
		if n := h.srv.CallCount(m); n != 0 {
			t.Errorf("%s calls = %d, want 0", m, n)
		}
	}
}

func TestCreateV1WithGPU(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	secret, err := h.client.Secrets.FromMap(h.ctx, map[string]string{"TOKEN": "s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb := h.create(&modal.SandboxCreateParams{GPU: "a100-80gb:2", CPU: 2, CPULimit: 4, MemoryMiB: 1024, MemoryLimitMiB: 2048, Secrets: []*modal.Secret{secret}, Workdir: "/tmp"})
	if !v1ID.MatchString(sb.SandboxID) {
		t.Errorf("V1 sandbox id %q does not look like sb-<22 base62>", sb.SandboxID)
	}
	out, _, code := h.run(sb, []string{"sh", "-c", "pwd; echo $TOKEN"}, nil)
	if out != "/tmp\ns3cret\n" || code != 0 {
		t.Errorf("got %q exit %d, want \"/tmp\\ns3cret\\n\" exit 0", out, code)
	}
	rec, _ := h.srv.Sandbox(sb.SandboxID)
	gpus, _ := filepath.Glob("/dev/nvidia[0-9]*")
	if rec.GPUAttached != (len(gpus) > 0) {
		t.Errorf("GPUAttached = %v on a machine with %d GPU devices", rec.GPUAttached, len(gpus))
	}
	if rec.V2 || rec.GPU != "A100-80GB:2" || rec.MilliCPU != 2000 || rec.MilliCPUMax != 4000 || rec.MemoryMiB != 1024 || rec.MemoryMiBMax != 2048 || rec.Workdir != "/tmp" {
		t.Errorf("record = %+v", rec)
	}
	for _, m := range []string{"SandboxCreate", "SecretGetOrCreate", "SandboxGetTaskId", "TaskGetCommandRouterAccess"} {
		if h.srv.CallCount(m) == 0 {
			t.Errorf("the V1 path made no %s call", m)
		}
	}
}

func TestEntrypointV2(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{Command: []string{"sh", "-c", "read line; echo got $line; echo oops >&2; exit 5"}})
	if _, err := sb.Stdin.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if err := sb.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait(h.ctx, nil)
	if err != nil || code != 5 {
		t.Fatalf("Wait = %d, %v; want 5", code, err)
	}
	out, err := io.ReadAll(sb.Stdout)
	if err != nil || string(out) != "got hello\n" {
		t.Errorf("Stdout = %q, %v", out, err)
	}
	errOut, err := io.ReadAll(sb.Stderr)
	if err != nil || string(errOut) != "oops\n" {
		t.Errorf("Stderr = %q, %v", errOut, err)
	}
	if rec, _ := h.srv.Sandbox(sb.SandboxID); rec.Status != "completed" || rec.ExitCode != 5 {
		t.Errorf("record status %q exit %d, want completed 5", rec.Status, rec.ExitCode)
	}
}

func TestEntrypointV1Logs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{}, "MODAL_SANDBOX_V2=0")
	sb := h.create(&modal.SandboxCreateParams{Command: []string{"sh", "-c", "read line; printf 'héllo %s\\n' \"$line\"; echo bye >&2"}})
	if !v1ID.MatchString(sb.SandboxID) {
		t.Errorf("MODAL_SANDBOX_V2=0 made %q, want a V1 id", sb.SandboxID)
	}
	sb.Stdin.Write([]byte("wörld\n"))
	sb.Stdin.Close()
	out, err := io.ReadAll(sb.Stdout)
	if err != nil || string(out) != "héllo wörld\n" {
		t.Errorf("Stdout = %q, %v", out, err)
	}
	errOut, err := io.ReadAll(sb.Stderr)
	if err != nil || string(errOut) != "bye\n" {
		t.Errorf("Stderr = %q, %v", errOut, err)
	}
	if code, err := sb.Wait(h.ctx, nil); err != nil || code != 0 {
		t.Errorf("Wait = %d, %v", code, err)
	}
	if h.srv.CallCount("SandboxGetLogs") == 0 || h.srv.CallCount("SandboxStdinWrite") == 0 {
		t.Error("no SandboxGetLogs or SandboxStdinWrite calls")
	}
}

func TestTerminatePollWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	if code, err := sb.Poll(h.ctx, nil); err != nil || code != nil {
		t.Fatalf("Poll of a running sandbox = %v, %v; want nil", code, err)
	}
	code, err := sb.Terminate(h.ctx, &modal.SandboxTerminateParams{Wait: true})
	if err != nil || code != 137 {
		t.Fatalf("Terminate(Wait) = %d, %v; want 137", code, err)
	}
	if c, err := sb.Poll(h.ctx, nil); err != nil || c == nil || *c != 137 {
		t.Errorf("Poll after terminate = %v, %v; want 137", c, err)
	}
	if c, err := sb.Wait(h.ctx, nil); err != nil || c != 137 {
		t.Errorf("Wait after terminate = %d, %v", c, err)
	}
	_, err = sb.Exec(h.ctx, []string{"true"}, nil)
	if status.Code(err) != codes.NotFound {
		t.Errorf("Exec after terminate: %v; want NotFound", err)
	}
	// A handle from the id alone sees the same.
	again, _ := h.client.Sandboxes.FromID(h.ctx, sb.SandboxID, nil)
	defer again.Detach()
	if c, err := again.Poll(h.ctx, nil); err != nil || c == nil || *c != 137 {
		t.Errorf("FromID Poll = %v, %v", c, err)
	}
	if _, err := h.client.Sandboxes.FromID(h.ctx, "sb-nope", nil); err != nil {
		t.Errorf("FromID makes no call, yet: %v", err)
	}
	missing, _ := h.client.Sandboxes.FromID(h.ctx, "sb-0000000000000000000000", nil)
	if _, err := missing.Poll(h.ctx, nil); status.Code(err) != codes.NotFound {
		t.Errorf("Poll of an unknown sandbox: %v; want NotFound", err)
	}
}

func TestSandboxTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{Timeout: 1 * time.Second})
	code, err := sb.Wait(h.ctx, nil)
	if err != nil || code != 124 {
		t.Fatalf("Wait = %d, %v; want 124 (timeout)", code, err)
	}
	if rec, _ := h.srv.Sandbox(sb.SandboxID); rec.Status != "timeout" {
		t.Errorf("status %q, want timeout", rec.Status)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{IdleTimeout: time.Second})
	// An exec that runs longer than the idle timeout keeps it alive.
	if _, _, code := h.run(sb, []string{"sleep", "1.5"}, nil); code != 0 {
		t.Fatalf("sleep exited %d", code)
	}
	if c, err := sb.Poll(h.ctx, nil); err != nil || c != nil {
		t.Fatalf("Poll right after an exec = %v, %v; want running", c, err)
	}
	if _, err := sb.Wait(h.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if rec, _ := h.srv.Sandbox(sb.SandboxID); rec.Status != "idle-timeout" {
		t.Errorf("status %q, want idle-timeout", rec.Status)
	}
}

func TestFromNameAndUniqueNames(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{Name: "worker"})
	_, err := h.client.Sandboxes.Create(h.ctx, h.app, h.image, &modal.SandboxCreateParams{Name: "worker"})
	var exists modal.AlreadyExistsError
	if !errors.As(err, &exists) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second sandbox named worker: %v; want AlreadyExistsError", err)
	}
	got, err := h.client.Sandboxes.FromName(h.ctx, "modaltest", "worker", nil)
	if err != nil || got.SandboxID != sb.SandboxID {
		t.Fatalf("FromName = %v, %v; want %s", got, err, sb.SandboxID)
	}
	got.Detach()
	if _, err := sb.Terminate(h.ctx, &modal.SandboxTerminateParams{Wait: true}); err != nil {
		t.Fatal(err)
	}
	var nf modal.NotFoundError
	if _, err := h.client.Sandboxes.FromName(h.ctx, "modaltest", "worker", nil); !errors.As(err, &nf) {
		t.Errorf("FromName of a terminated sandbox: %v; want NotFoundError", err)
	}
	got, err = h.client.Sandboxes.FromName(h.ctx, "modaltest", "worker", &modal.SandboxFromNameParams{IncludeTerminated: true})
	if err != nil || got.SandboxID != sb.SandboxID {
		t.Fatalf("FromName(IncludeTerminated) = %v, %v", got, err)
	}
	got.Detach()
	// The name is free again.
	h.create(&modal.SandboxCreateParams{Name: "worker"})
	if _, err := h.client.Sandboxes.FromName(h.ctx, "no-such-app", "worker", nil); !errors.As(err, &nf) {
		t.Errorf("FromName in an unknown app: %v", err)
	}
}

func TestListPaginationAndTags(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{ListPageSize: 2})
	var ids []string
	for i := range 5 {
		sb := h.create(&modal.SandboxCreateParams{Tags: map[string]string{"n": fmt.Sprint(i), "parity": []string{"even", "odd"}[i%2]}})
		ids = append(ids, sb.SandboxID)
	}
	list := func(params *modal.SandboxListParams) []string {
		t.Helper()
		seq, err := h.client.Sandboxes.List(h.ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for sb, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, sb.SandboxID)
			sb.Detach()
		}
		return got
	}
	h.srv.ResetCalls()
	got := list(&modal.SandboxListParams{AppID: h.app.AppID})
	want := slices.Clone(ids)
	slices.Reverse(want) // newest first
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if n := h.srv.CallCount("SandboxListV2"); n != 4 { // 2 + 2 + 1, then the empty page
		t.Errorf("SandboxListV2 pages = %d, want 4", n)
	}
	got = list(&modal.SandboxListParams{AppID: h.app.AppID, Tags: map[string]string{"parity": "odd"}})
	if !slices.Equal(got, []string{ids[3], ids[1]}) {
		t.Errorf("List(parity=odd) = %v, want %v", got, []string{ids[3], ids[1]})
	}
	// Finished sandboxes are not listed.
	sb, _ := h.client.Sandboxes.FromID(h.ctx, ids[0], nil)
	sb.Terminate(h.ctx, &modal.SandboxTerminateParams{Wait: true})
	sb.Detach()
	if got := list(&modal.SandboxListParams{}); len(got) != 4 {
		t.Errorf("List of the environment after a terminate: %d sandboxes, want 4", len(got))
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{}, "MODAL_SANDBOX_V2=0")
	sb := h.create(&modal.SandboxCreateParams{Tags: map[string]string{"a": "1"}})
	tags, err := sb.GetTags(h.ctx, nil)
	if err != nil || len(tags) != 1 || tags["a"] != "1" {
		t.Fatalf("GetTags = %v, %v", tags, err)
	}
	if err := sb.SetTags(h.ctx, map[string]string{"b": "2", "c": "3"}, nil); err != nil {
		t.Fatal(err)
	}
	tags, err = sb.GetTags(h.ctx, nil)
	if err != nil || len(tags) != 2 || tags["b"] != "2" || tags["c"] != "3" {
		t.Errorf("GetTags after SetTags (which replaces) = %v, %v", tags, err)
	}
	if h.srv.CallCount("SandboxTagsSet") != 1 || h.srv.CallCount("SandboxTagsGet") != 2 {
		t.Error("the V1 sandbox did not use the V1 tag RPCs")
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{TokenID: "ak-test", TokenSecret: "as-test"})
	bad := h.newClient("ak-test", "as-wrong")
	_, err := bad.Apps.FromName(h.ctx, "modaltest", nil)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong secret: %v; want Unauthenticated", err)
	}
	if n := h.srv.CallCount("AuthTokenGet"); n != 2 { // the good client's and the bad one's, not retried
		t.Errorf("AuthTokenGet calls = %d, want 2", n)
	}
}

func TestAuthTokenRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{AuthTokenTTL: 3 * time.Second, RouterTokenTTL: 2 * time.Second})
	sb := h.create(nil)
	h.run(sb, []string{"true"}, nil)
	time.Sleep(4100 * time.Millisecond)
	// Both tokens have expired: the SDK fetches new ones and carries on.
	if out, _, _ := h.run(sb, []string{"echo", "still here"}, nil); out != "still here\n" {
		t.Errorf("exec after the tokens expired: %q", out)
	}
	if _, err := sb.GetTags(h.ctx, nil); err != nil {
		t.Errorf("GetTags after the auth token expired: %v", err)
	}
	if n := h.srv.CallCount("AuthTokenGet"); n < 2 {
		t.Errorf("AuthTokenGet calls = %d, want a refresh", n)
	}
	if n := h.srv.CallCount("SandboxGetCommandRouterAccess"); n < 1 {
		t.Errorf("SandboxGetCommandRouterAccess calls = %d, want a router token refresh", n)
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{MaxSandboxes: 1})
	sb := h.create(nil)
	_, err := h.client.Sandboxes.Create(h.ctx, h.app, h.image, nil)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most 1 Sandboxes") {
		t.Fatalf("second sandbox: %v; want ResourceExhausted", err)
	}
	sb.Terminate(h.ctx, &modal.SandboxTerminateParams{Wait: true})
	h.create(nil) // room again
}

func TestCloseDestroysSandboxes(t *testing.T) {
	t.Parallel()
	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := newHarness(t, modaltest.Options{Provider: p})
	sb := h.create(&modal.SandboxCreateParams{Command: []string{"sleep", "600"}})
	h.create(nil)
	if live, _ := p.List(h.ctx); len(live) != 2 {
		t.Fatalf("the provider runs %d sandboxes, want 2", len(live))
	}
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	rec, _ := h.srv.Sandbox(sb.SandboxID)
	if rec.Status != "terminated" || rec.FinishedAt.IsZero() {
		t.Errorf("after Close: %+v", rec)
	}
	if live, _ := p.List(h.ctx); len(live) != 0 {
		t.Errorf("after Close the provider still runs %d sandboxes", len(live))
	}
	if err := h.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// interfaces lists the network interfaces a sandbox sees.
func (h *harness) interfaces(sb *modal.Sandbox) []string {
	h.t.Helper()
	out, _, _ := h.run(sb, []string{"sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"}, nil)
	return strings.Fields(out)
}

func TestNetworkPolicies(t *testing.T) {
	t.Parallel()
	// By default every sandbox has only its loopback, whatever its policy.
	h := newHarness(t, modaltest.Options{})
	if got := h.interfaces(h.create(nil)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("default sandbox interfaces %v, want [lo]", got)
	}

	// With HostNetwork, an open policy gets the host's network, a blocked
	// one nothing, an allowlist a filtering proxy.
	hn := newHarness(t, modaltest.Options{HostNetwork: true})
	if got := hn.interfaces(hn.create(nil)); slices.Equal(got, []string{"lo"}) {
		t.Errorf("open sandbox with HostNetwork sees only %v", got)
	}
	if got := hn.interfaces(hn.create(&modal.SandboxCreateParams{BlockNetwork: true})); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("blocked sandbox interfaces %v, want [lo]", got)
	}
	allow := hn.create(&modal.SandboxCreateParams{OutboundDomainAllowlist: &modal.Allowlist{Entries: []string{"example.com"}}})
	if out, _, _ := hn.run(allow, []string{"sh", "-c", "echo $HTTPS_PROXY"}, nil); strings.TrimSpace(out) == "" {
		t.Error("an allowlisted sandbox has no proxy in its environment")
	}
	if rec, _ := hn.srv.Sandbox(allow.SandboxID); rec.Network != "allowlist" || !slices.Equal(rec.OutboundDomains, []string{"example.com"}) {
		t.Errorf("record: network %q, domains %v", rec.Network, rec.OutboundDomains)
	}
	// Bad allowlist entries are refused, as Modal does.
	_, err := hn.client.Sandboxes.Create(hn.ctx, hn.app, hn.image, &modal.SandboxCreateParams{OutboundCIDRAllowlist: &modal.Allowlist{Entries: []string{"not-an-ip/8"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Invalid CIDR (outbound IPv4): not-an-ip/8") {
		t.Errorf("a bad CIDR: %v", err)
	}
}
