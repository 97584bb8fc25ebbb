package modal_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

// Threat: a Modal that stops answering (calls failing for good, a server
// gone mid-command, a kill refused) pins the caller's goroutine past its
// deadline and its command timeout, or reports what did not happen. Every
// wait must end by the context's deadline or the command's Timeout plus
// modal.KillGrace, and say truthfully what happened.
//
// No test here measures time against a limit (these machines are noisy):
// each runs its call under a generous hang guard, which fails the test if
// the call has not returned, and logs how long the call took.

// hangGuard is how long a call may block before the test calls it hung:
// far past any bound the provider promises.
const hangGuard = 3 * time.Minute

// returns runs f and fails the test if it has not returned within
// hangGuard; it returns how long f took.
func returns(t *testing.T, what string, f func()) time.Duration {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("%s still blocked after %v: it hangs", what, hangGuard)
	}
	d := time.Since(start)
	t.Logf("%s returned after %v", what, d.Round(time.Millisecond))
	return d
}

// signalWriter closes seen when want has been written to it.
type signalWriter struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  strings.Builder
	once sync.Once
}

func newSignalWriter(want string) *signalWriter {
	return &signalWriter{want: want, seen: make(chan struct{})}
}

func (w *signalWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(b)
	found := strings.Contains(w.buf.String(), w.want)
	w.mu.Unlock()
	if found {
		w.once.Do(func() { close(w.seen) })
	}
	return len(b), nil
}

// hangSandbox starts an emulator, a provider and a sandbox for one test.
func hangSandbox(t *testing.T) (*modaltest.Server, *compute.Sandbox) {
	t.Helper()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	sb, err := compute.New(compute.Config{Provider: p}).Create(testContext(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sb.Destroy(ctx) // fails where the test closed the emulator
	})
	return srv, sb
}

// stillRunning lists the processes of the sandbox named name (read from
// /proc, so that it needs no ps).
func stillRunning(t *testing.T, sb *compute.Sandbox, name string) bool {
	t.Helper()
	res, err := sb.RunShell(testContext(t), `for d in /proc/[0-9]*; do { read -r l < "$d/stat"; } 2>/dev/null && echo "$l"; done`, nil)
	if err != nil {
		t.Fatalf("listing the sandbox's processes: %v", err)
	}
	return strings.Contains(res.Stdout, "("+name+")")
}

// waitRunning waits until a process of the sandbox is named name, and
// fails the test if none is within hangGuard.
func waitRunning(t *testing.T, sb *compute.Sandbox, name string) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); !stillRunning(t, sb, name); {
		if time.Now().After(deadline) {
			t.Fatalf("no process named %s in the sandbox after %v", name, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Threat: TaskExecWait failing for good kept a command's wait blocked past
// its context's deadline (a 60 s deadline was still blocked at 90 s).
func TestHangExecWaitFailingHonoursDeadline(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	remove := srv.Inject("TaskExecWait", modaltest.Fault{Code: codes.Unavailable, Message: "exec wait is broken"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var (
		res *compute.Result
		err error
	)
	d := returns(t, "a command past its deadline while TaskExecWait fails", func() {
		res, err = sb.Run(ctx, []string{"sleep", "3600"}, nil)
	})
	t.Logf("returned %v past the 2s deadline: %+v, %v", d-2*time.Second, res, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its deadline = %v; want an error matching context.DeadlineExceeded", err)
	}
	remove()
	if stillRunning(t, sb, "sleep") {
		t.Errorf("the command still runs after Run returned its deadline's error; want it killed")
	}
}

// Threat: the same, with the command's own Timeout: the result must still
// be a timeout (exit 124, compute.ErrTimeout), the command killed.
func TestHangExecWaitFailingHonoursTimeout(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	remove := srv.Inject("TaskExecWait", modaltest.Fault{Code: codes.Unavailable, Message: "exec wait is broken"})
	var (
		res *compute.Result
		err error
	)
	returns(t, "a command past its Timeout while TaskExecWait fails", func() {
		res, err = sb.Run(context.Background(), []string{"sleep", "3600"}, &compute.RunOptions{Timeout: time.Second})
	})
	if !errors.Is(err, compute.ErrTimeout) || res == nil || res.ExitCode != compute.ExitCodeTimeout {
		t.Errorf("Run past its Timeout = %+v, %v; want exit 124 and compute.ErrTimeout", res, err)
	}
	remove()
	if stillRunning(t, sb, "sleep") {
		t.Errorf("the command still runs after its timeout; want it killed")
	}
}

// Threat: a command whose exit status Modal never reports, with no
// deadline at all, blocked its Wait forever.
func TestHangExitStatusNeverComes(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	srv.Inject("TaskExecWait", modaltest.Fault{Code: codes.Unavailable, Message: "exec wait is broken"})
	var err error
	returns(t, "a finished command whose exit status never comes", func() {
		_, err = sb.RunCommand(context.Background(), "echo", "hi")
	})
	var me *modal.Error
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "did not report its exit status") {
		t.Errorf("RunCommand whose exit status never comes = %v; want a *modal.Error saying Modal did not report the exit status", err)
	}
}

// Threat: a kill Modal refused was reported as done: a 1.5 s timeout
// returned when the command ended by itself, 20 s later, saying it "was
// killed". A refused kill must be reported as such, at once.
func TestHangKillRefused(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"timeout", "context", "Kill"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv, sb := hangSandbox(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := &compute.RunOptions{}
			if how == "timeout" {
				// Long enough for waitRunning below on a busy machine: the
				// kill must come after the fault is in place.
				opts.Timeout = 5 * time.Second
			}
			// The command never ends by itself: only a kill ends it, and a
			// wait for its natural end would trip the hang guard.
			proc, err := sb.Start(ctx, []string{"sleep", "3600"}, opts)
			if err != nil {
				t.Fatal(err)
			}
			// Start returns on the launcher's marker, which comes just
			// before the launcher execs the command: only once it runs under
			// its own name does its absence below mean that it ended.
			waitRunning(t, sb, "sleep")
			// Every exec from now on (the kill is one) is refused.
			remove := srv.Inject("TaskExecStart", modaltest.Fault{Code: codes.PermissionDenied, Message: "no more commands"})
			var killErr error
			switch how {
			case "context":
				cancel()
			case "Kill":
				returns(t, "a refused Kill", func() { killErr = proc.Kill() })
				if killErr == nil || !strings.Contains(killErr.Error(), "not confirmed") {
					t.Errorf("a refused Kill returned %v; want an error saying the kill was not confirmed", killErr)
				}
			}
			var res *compute.Result
			returns(t, "Wait after a refused kill", func() { res, err = proc.Wait() })
			t.Logf("Wait = %+v, %v", res, err)
			var me *modal.Error
			if !errors.As(err, &me) || !strings.Contains(err.Error(), "not confirmed") || !strings.Contains(err.Error(), "no more commands") {
				t.Errorf("Wait after a refused kill = %v; want a *modal.Error saying the kill was not confirmed, with Modal's reason", err)
			}
			if errors.Is(err, compute.ErrTimeout) {
				t.Errorf("Wait after a refused kill matches compute.ErrTimeout, which says the command was killed: %v", err)
			}
			if how == "context" && !errors.Is(err, context.Canceled) {
				t.Errorf("Wait after a refused kill on a cancelled context = %v; want it to match context.Canceled", err)
			}
			remove()
			if !stillRunning(t, sb, "sleep") {
				t.Errorf("the command is gone, yet its kill was refused: the test did not test a refused kill")
			}
		})
	}
}

// Threat: with the emulator killed mid-command, `compute exec --provider
// modal` hung for 11+ minutes. A command whose Modal goes away must end
// with an error, with no deadline set.
func TestHangModalGoneMidCommand(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	out := newSignalWriter("started")
	proc, err := sb.Start(context.Background(), []string{"sh", "-c", "echo started; exec sleep 3600"}, &compute.RunOptions{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	<-out.seen
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var res *compute.Result
	returns(t, "Wait with Modal gone", func() { res, err = proc.Wait() })
	t.Logf("Wait with Modal gone = %+v, %v", res, err)
	var me *modal.Error
	if !errors.As(err, &me) {
		t.Errorf("Wait with Modal gone = %v; want a *modal.Error", err)
	}
}

// Threat: a filesystem operation waits on a read the SDK makes on a
// context of its own, past the caller's deadline.
func TestHangFilesystemHonoursDeadline(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	ctx := testContext(t)
	if err := sb.FileSystem().WriteFile(ctx, "/tmp/f", []byte("data")); err != nil {
		t.Fatal(err)
	}
	// The file tool's output does not come for a long while.
	srv.Inject("TaskExecStdioRead", modaltest.Fault{Delay: 30 * time.Second, Times: 1})
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var err error
	returns(t, "ReadFile whose output does not come", func() {
		_, err = sb.FileSystem().ReadFile(dctx, "/tmp/f")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadFile past its deadline = %v; want an error matching context.DeadlineExceeded", err)
	}
}

// Threat: a filesystem operation with no deadline retries a failing
// TaskExecWait forever (the SDK does): it must end when Modal stops
// answering, saying so.
func TestHangFilesystemModalStopsAnswering(t *testing.T) {
	t.Parallel()
	srv, sb := hangSandbox(t)
	srv.Inject("TaskExecWait", modaltest.Fault{Code: codes.Unavailable, Message: "exec wait is broken"})
	var err error
	returns(t, "ReadFile while TaskExecWait fails", func() {
		_, err = sb.FileSystem().ReadFile(context.Background(), "/etc/hostname")
	})
	if err == nil || !strings.Contains(err.Error(), "Modal stopped answering") {
		t.Errorf("ReadFile while TaskExecWait fails = %v; want an error saying Modal stopped answering", err)
	}
}

// Threat: the sandbox's own calls (create, info, tunnels, snapshot,
// destroy) outlive the caller's deadline when Modal does not answer them.
func TestHangSandboxCallsHonourDeadline(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{})
	c := compute.New(compute.Config{Provider: p})
	ctx := testContext(t)
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	ported, err := compute.New(compute.Config{Provider: p.With(modal.SandboxOptions{UnencryptedPorts: []int{8080}})}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ported.Destroy(ctx)
	calls := []struct {
		rpc string
		do  func(context.Context) error
	}{
		{"SandboxCreateV2", func(ctx context.Context) error { _, err := c.Create(ctx, nil); return err }},
		{"SandboxWaitV2", func(ctx context.Context) error { _, err := sb.Info(ctx); return err }},
		{"SandboxGetTunnelsV2", func(ctx context.Context) error { _, err := ported.URL(ctx, 8080); return err }},
		{"TaskSnapshotFilesystem", func(ctx context.Context) error { _, err := sb.Snapshot(ctx); return err }},
		{"SandboxTerminateV2", func(ctx context.Context) error { return sb.Destroy(ctx) }},
	}
	for _, call := range calls {
		srv.Inject(call.rpc, modaltest.Fault{Delay: 30 * time.Second, Times: 1})
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		returns(t, call.rpc+" that Modal does not answer", func() { err = call.do(dctx) })
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s that Modal does not answer = %v; want an error matching context.DeadlineExceeded", call.rpc, err)
		}
	}
}
