package modal_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// Reliability: the emulator makes Modal misbehave on purpose, and every
// operation must still succeed (the SDK retries what is safe to retry)
// or fail with a typed error; no command may run twice.

// counted runs a command that appends a line to a file, and returns how
// many lines the file has: how many times such commands really ran.
const countScript = `echo ran >> /tmp/runs; echo out; echo err >&2`

func runCount(t *testing.T, ctx context.Context, sb *compute.Sandbox) int {
	t.Helper()
	b, err := sb.FileSystem().ReadFile(ctx, "/tmp/runs")
	if err != nil {
		t.Fatalf("reading the run counter: %v", err)
	}
	return strings.Count(string(b), "ran\n")
}

// workload exercises every kind of call once and checks the results.
func workload(t *testing.T, ctx context.Context, c *compute.Compute) (runs int) {
	t.Helper()
	sb, err := c.Create(ctx, &compute.CreateOptions{Env: map[string]string{"WL": "1"}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer func() {
		if err := sb.Destroy(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()
	for i := range 3 {
		res, err := sb.RunShell(ctx, countScript, nil)
		if err != nil || res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode != 0 {
			t.Fatalf("RunShell %d = %+v, %v", i, res, err)
		}
		runs++
	}
	res, err := sb.RunCode(ctx, "import os; print(os.environ['WL'])", nil)
	if err != nil || res.Stdout != "1\n" {
		t.Fatalf("RunCode = %+v, %v", res, err)
	}
	res, err = sb.Run(ctx, []string{"sh", "-c", "cat; " + countScript}, &compute.RunOptions{Stdin: strings.NewReader("in;")})
	if err != nil || res.Stdout != "in;out\n" {
		t.Fatalf("Run with stdin = %+v, %v", res, err)
	}
	runs++
	data := make([]byte, 600<<10)
	crand.Read(data)
	if err := sb.FileSystem().WriteFile(ctx, "/tmp/data.bin", data); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := sb.FileSystem().ReadFile(ctx, "/tmp/data.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadFile = %d bytes (equal %v), %v; want the %d bytes written", len(got), bytes.Equal(got, data), err, len(data))
	}
	if _, err := sb.Info(ctx); err != nil {
		t.Fatalf("Info: %v", err)
	}
	if _, err := c.Get(ctx, sb.ID()); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if n := runCount(t, ctx, sb); n != runs {
		t.Errorf("the counted commands ran %d times; want %d (each exactly once)", n, runs)
	}
	return runs
}

// Transient failures of the calls Modal's SDK retries: each fails twice
// before it succeeds, answered before the work (Unavailable) or after it
// (the work done, the answer lost).
func TestFaultsTransient(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	for _, m := range []string{"AppGetOrCreate", "ImageGetOrCreate", "SandboxCreateV2", "SandboxWaitV2", "SandboxTerminateV2", "TaskExecWait", "TaskExecStdioRead"} {
		srv.Inject(m, modaltest.Fault{Code: codes.Unavailable, Times: 2})
	}
	// Lost answers: the sandbox and the commands must exist once.
	srv.Inject("SandboxCreateV2", modaltest.Fault{Code: codes.Unavailable, AfterHandler: true, Times: 1})
	srv.Inject("TaskExecStart", modaltest.Fault{Code: codes.Unavailable, AfterHandler: true, Times: 3})
	srv.Inject("TaskExecStdinWrite", modaltest.Fault{Code: codes.Internal, AfterHandler: true, Times: 1})
	workload(t, ctx, compute.New(compute.Config{Provider: p}))
	if n := len(srv.Sandboxes()); n != 1 {
		t.Errorf("%d sandboxes were created; want 1 (the lost answer was retried, not the create)", n)
	}
}

// A share of every call fails with Unavailable, at random, far more
// often than Modal does: every operation succeeds (after the SDK's
// retries) or fails with a typed error (a *modal.Error whose gRPC status
// is Unavailable); no command runs twice.
func TestFaultsRandomUnavailable(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	remove := srv.Inject("*", modaltest.Fault{Code: codes.Unavailable, Fraction: 0.25})
	checkErr := func(op string, err error) {
		t.Helper()
		var me *modal.Error
		if !errors.As(err, &me) || status.Code(err) != codes.Unavailable {
			t.Errorf("%s failed with %v (%T); want a *modal.Error with status Unavailable", op, err, err)
		}
	}
	const n = 12
	ok := 0
	for i := range n {
		res, err := sb.RunShell(ctx, countScript, nil)
		if err != nil {
			checkErr(fmt.Sprintf("RunShell %d", i), err)
			continue
		}
		if res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode != 0 {
			t.Errorf("RunShell %d = %+v", i, res)
		}
		ok++
	}
	data := []byte("through the storm")
	for i := range 5 {
		if err := sb.FileSystem().WriteFile(ctx, "/tmp/storm.txt", data); err != nil {
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Errorf("WriteFile %d: %v (%T); want an *fs.PathError", i, err, err)
			}
			continue
		}
		got, err := sb.FileSystem().ReadFile(ctx, "/tmp/storm.txt")
		if err == nil && !bytes.Equal(got, data) {
			t.Errorf("ReadFile %d = %q; want %q", i, got, data)
		}
	}
	if _, err := sb.Info(ctx); err != nil {
		checkErr("Info", err)
	}
	remove()
	runs := runCount(t, ctx, sb)
	if runs < ok || runs > n {
		t.Errorf("the counted command ran %d times for %d calls, %d of which succeeded; want between %d and %d (never twice)", runs, n, ok, ok, n)
	}
	t.Logf("%d of %d commands succeeded through 25%% of calls failing; %d calls in all", ok, n, srv.CallCount(""))
}

// Throttling: Modal answers ResourceExhausted with a retry-after; the SDK
// waits and retries, the operation succeeds.
func TestFaultsThrottle(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	srv.Inject("SandboxCreateV2", modaltest.Fault{RetryAfter: 300 * time.Millisecond, Times: 2})
	srv.Inject("SandboxWaitV2", modaltest.Fault{RetryAfter: 100 * time.Millisecond, Times: 1})
	c := compute.New(compute.Config{Provider: p})
	start := time.Now()
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatalf("Create while throttled: %v", err)
	}
	defer sb.Destroy(ctx)
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("Create returned after %v; the throttle asked for two waits of 300ms", d)
	}
	if _, err := sb.Info(ctx); err != nil {
		t.Errorf("Info while throttled: %v", err)
	}
	if n := len(srv.Sandboxes()); n != 1 {
		t.Errorf("%d sandboxes; want 1", n)
	}
}

// Throttling that lasts past what the caller allows (MaxThrottleWait 0
// disables the SDK's waiting) is a quota error.
func TestFaultsThrottleExhausted(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	srv.Inject("SandboxCreateV2", modaltest.Fault{RetryAfter: 10 * time.Second, Message: "too many sandboxes being created"})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err == nil {
		t.Fatal("Create succeeded against a server that always throttles")
	}
	t.Logf("Create against a server that always throttles: %v", err)
	if !errors.Is(err, compute.ErrQuotaExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Create against a server that always throttles: %v; want compute.ErrQuotaExceeded or the deadline", err)
	}
}

// Broken streams: output, stdin and file uploads are resumed at the
// right offset, byte for byte.
func TestFaultsBrokenStreams(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	srv.Inject("TaskExecStdioRead", modaltest.Fault{BreakAfterBytes: 100 << 10, Times: 4})
	res, err := sb.RunShell(ctx, "head -c 1048576 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero | tr '\\0' y >&2", nil)
	if err != nil || len(res.Stdout) != 1<<20 || strings.Trim(res.Stdout, "x") != "" || len(res.Stderr) != 300000 {
		t.Errorf("output through broken streams: %d bytes of stdout, %d of stderr, %v; want 1048576 and 300000", len(res.Stdout), len(res.Stderr), err)
	}
	srv.Inject("TaskExecStdinWriteStream", modaltest.Fault{BreakAfterBytes: 300 << 10, Times: 2})
	data := make([]byte, 1<<20)
	crand.Read(data)
	if err := sb.FileSystem().WriteFile(ctx, "/tmp/up.bin", data); err != nil {
		t.Fatalf("WriteFile through a broken stream: %v", err)
	}
	if n := srv.CallCount("TaskExecStdinStatus"); n == 0 {
		t.Errorf("no TaskExecStdinStatus call: the upload was not resumed (was the fault hit?)")
	}
	got, err := sb.FileSystem().ReadFile(ctx, "/tmp/up.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("the file written through a broken stream reads back %d bytes (equal %v), %v", len(got), bytes.Equal(got, data), err)
	}
}

// Latency on every call: everything works, only slower. The test checks
// that it was slower, by at least the injected latency, so that it fails
// if the injection does nothing; it sets no upper limit.
func TestFaultsLatency(t *testing.T) {
	t.Parallel()
	const latency, stdioDelay = 20 * time.Millisecond, 10 * time.Millisecond
	srv, p := emulator(t, modaltest.Options{Latency: latency}, modal.Config{})
	ctx := testContext(t)
	srv.Inject("TaskExecStdioRead", modaltest.Fault{Delay: stdioDelay, MaxDelay: 80 * time.Millisecond})
	c := compute.New(compute.Config{Provider: p})
	workload(t, ctx, c)

	// Seen from the client: a command's output comes through at least one
	// TaskExecStdioRead, which is delayed by both.
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.WithoutCancel(ctx))
	start := time.Now()
	res, err := sb.RunCommand(ctx, "echo", "slow")
	elapsed := time.Since(start)
	if err != nil || res.Stdout != "slow\n" {
		t.Fatalf("RunCommand = %+v, %v", res, err)
	}
	if elapsed < latency+stdioDelay {
		t.Errorf("RunCommand took %v; want at least the injected %v + %v", elapsed, latency, stdioDelay)
	}

	// Seen from the server: every call that ran to success waited the
	// latency, and every successful TaskExecStdioRead the fault's delay too.
	// (A call the client cancelled while it waited may end sooner.)
	var ok, reads int
	for _, call := range srv.Calls() {
		if call.Code != codes.OK || call.Duration == 0 { // failed, or still running
			continue
		}
		ok++
		want := latency
		if call.Method == "TaskExecStdioRead" {
			reads++
			want += stdioDelay
		}
		if call.Duration < want {
			t.Errorf("%s took %v on the server; want at least the injected %v", call.Method, call.Duration, want)
		}
	}
	if ok < 10 || reads == 0 {
		t.Errorf("%d successful calls, %d of them TaskExecStdioRead; want the workload's calls (at least 10, with reads)", ok, reads)
	}
}

// A permanent failure is not retried into a success, and says what it is.
func TestFaultsPermanent(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	srv.Inject("TaskExecStart", modaltest.Fault{Code: codes.PermissionDenied, Message: "no commands for you", Times: 1})
	_, err = sb.RunCommand(ctx, "true")
	var me *modal.Error
	if !errors.As(err, &me) || status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no commands for you") {
		t.Errorf("RunCommand with a permanent failure: %v (%T); want a *modal.Error with the PermissionDenied status", err, err)
	}
	if n := srv.CallCount("TaskExecStart"); n != 1 {
		t.Errorf("TaskExecStart called %d times; want 1 (a permanent error is not retried)", n)
	}
	if _, err := sb.RunCommand(ctx, "true"); err != nil {
		t.Errorf("RunCommand after the fault: %v", err)
	}
}
