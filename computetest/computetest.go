// Package computetest is the conformance suite for compute providers, in
// the spirit of testing/fstest: one call checks every behaviour of the
// compute API against a provider, the same way for every provider.
//
// A provider package calls Run from its own tests:
//
//	func TestConformance(t *testing.T) {
//		p, err := local.New(local.Options{})
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer p.Close()
//		computetest.Run(t, p)
//	}
//
// Every case is a named subtest (so -run selects them, for example
// -run 'Conformance/Command/Timeout'), creates its own sandboxes with a
// fresh compute.New(compute.Config{Provider: p}) and destroys them when it
// ends. Cases of a group run in parallel (raise -parallel to run more at
// once). Every call is bounded by a generous deadline, so a broken provider
// fails instead of hanging; no case asserts how fast anything is, only
// correctness bounds such as "a 60 s sleep with a 2 s timeout was killed
// before 30 s".
//
// The groups: Sandbox (ids, Info), Command (arguments, shell, exit codes,
// missing commands, background, kill, streaming, timeouts that kill
// descendants, cancellation, environment, working directory, stdin),
// RunCode (Python and Node, detection, syntax and runtime errors, exact
// code, large code, stdin, arguments), FileSystem (every operation, run
// once through the provider's native filesystem and once through
// driver.ExecFileSystem, plus testing/fstest on the io/fs view), Cmd,
// Terminal (a shell on a pseudo-terminal: echo, tty, size and resize,
// Ctrl-C, environment, input, exit codes, Close), Lifecycle (Get, List,
// Destroy, the sandbox's own timeout) and Concurrency.
//
// The sandboxes must have /bin/sh, GNU coreutils and findutils, /proc,
// /tmp, python3 and node (see SkipPython and SkipNode). The paths and
// processes of each case are its own, so providers whose sandboxes share
// the host's /tmp or process table pass too.
package computetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
)

// An Option adjusts Run to what a provider's sandboxes hold.
type Option func(*config)

type config struct {
	noPython, noNode bool
	richPython       bool
	sandboxes        int
	noResize         bool
	noTerminal       bool
}

// SkipPython declares that the provider's sandboxes have no python3. The
// Python cases are skipped (saying so), and Run checks instead that RunCode
// with Python reports compute.ErrUnsupported.
func SkipPython() Option { return func(c *config) { c.noPython = true } }

// SkipNode declares that the provider's sandboxes have no node. The Node
// cases are skipped (saying so), and Run checks instead that RunCode with
// Node reports compute.ErrUnsupported.
func SkipNode() Option { return func(c *config) { c.noNode = true } }

// ConcurrentSandboxes sets how many sandboxes the concurrency case creates
// and uses at once (20 by default), for providers with a small quota. Values
// below 2 mean 2.
func ConcurrentSandboxes(n int) Option {
	return func(c *config) { c.sandboxes = max(n, 2) }
}

// Deadlines that turn a hang into a failure. They are not performance
// limits: a healthy provider is far inside them.
const (
	caseTimeout    = 2 * time.Minute
	destroyTimeout = time.Minute
	// killBound is how long a killed or timed-out command may take to
	// return: far more than a healthy provider needs, far less than the
	// 60 s the killed command would otherwise run.
	killBound = 30 * time.Second
)

// Run runs the conformance suite against p. It returns when every case
// has finished, so the caller may close p right after it.
func Run(t *testing.T, p driver.Provider, opts ...Option) {
	t.Helper()
	s := &suite{p: p, cfg: config{sandboxes: 20}}
	for _, o := range opts {
		o(&s.cfg)
	}
	if p == nil {
		t.Fatal("computetest.Run: nil provider")
	}
	if p.Name() == "" {
		t.Error("Provider.Name() is empty; want a short lowercase name")
	}
	// Groups run one after another; the cases inside a group run in
	// parallel. t.Run returns only when a group's parallel cases are done,
	// which keeps Run synchronous.
	t.Run("Sandbox", s.testSandbox)
	t.Run("Command", s.testCommand)
	t.Run("RunCode", s.testRunCode)
	t.Run("FileSystem", s.testFileSystem)
	t.Run("CodeContext", s.testCodeContext)
	t.Run("Terminal", s.testTerminal)
	t.Run("Cmd", s.testCmd)
	t.Run("Lifecycle", s.testLifecycle)
	t.Run("Concurrency", s.testConcurrency)
}

type suite struct {
	p   driver.Provider
	cfg config
}

// testContext returns a context for one case, cancelled when the case ends.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	t.Cleanup(cancel)
	return ctx
}

// sandbox creates a sandbox of the suite's provider, destroyed when t ends.
func (s *suite) sandbox(t *testing.T, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	return create(t, s.p, opts)
}

// create creates a sandbox with a fresh Compute for p and destroys it when
// t ends.
func create(t *testing.T, p driver.Provider, opts *compute.CreateOptions) *compute.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, opts)
	if err != nil {
		t.Fatalf("Create(%s): %v", describe(opts), err)
	}
	if sb == nil {
		t.Fatalf("Create(%s) = nil, nil", describe(opts))
	}
	t.Cleanup(func() { destroy(t, sb) })
	return sb
}

func destroy(t *testing.T, sb *compute.Sandbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
	defer cancel()
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("Destroy(%s): %v; want nil", sb.ID(), err)
	}
}

func describe(opts *compute.CreateOptions) string {
	if opts == nil {
		return "nil"
	}
	return fmt.Sprintf("%+v", *opts)
}

// run runs argv and fails the test on an error; non-zero exits are the
// caller's to check.
func run(t *testing.T, ctx context.Context, sb *compute.Sandbox, argv []string, opts *compute.RunOptions) *compute.Result {
	t.Helper()
	res, err := sb.Run(ctx, argv, opts)
	if err != nil {
		t.Fatalf("Run(%q): %v", argv, err)
	}
	if res == nil {
		t.Fatalf("Run(%q) = nil, nil", argv)
	}
	return res
}

// shell runs a shell script and fails the test unless it exits 0.
func shell(t *testing.T, ctx context.Context, sb *compute.Sandbox, script string) string {
	t.Helper()
	res := run(t, ctx, sb, []string{"/bin/sh", "-c", script}, nil)
	if res.ExitCode != 0 {
		t.Fatalf("RunShell(%q): exit code %d, want 0\nstdout: %q\nstderr: %q", script, res.ExitCode, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// workDir returns the sandbox's default working directory, as pwd prints
// it.
func workDir(t *testing.T, ctx context.Context, sb *compute.Sandbox) string {
	t.Helper()
	dir := strings.TrimSuffix(shell(t, ctx, sb, "pwd -P"), "\n")
	if !strings.HasPrefix(dir, "/") {
		t.Fatalf("pwd -P printed %q, want an absolute path", dir)
	}
	return dir
}

// scratch returns a fresh directory path under /tmp for one case, unique
// also where sandboxes share the host's /tmp (an unisolated provider), and
// removes it when t ends, before the sandbox is destroyed.
func scratch(t *testing.T, sb *compute.Sandbox) string {
	dir := fmt.Sprintf("/tmp/computetest-%08x", rand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
		defer cancel()
		sb.RunCommand(ctx, "rm", "-rf", dir)
	})
	return dir
}

// marker returns a sleep duration unique to one case (about 60 s), so
// that its processes can be told apart from any other sleep, also where
// the sandbox shares the host's process table.
func marker() string {
	return fmt.Sprintf("60.%06d", rand.IntN(1e6))
}

// scanScript prints one line for every live sleep process whose command
// line holds $1. Zombies have an empty command line and are not listed.
const scanScript = `m=$1
for d in /proc/[0-9]*; do
	read -r c 2>/dev/null <"$d/comm" || continue
	[ "$c" = sleep ] || continue
	a=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline")
	case "$a" in *"$m"*) echo "pid ${d#/proc/}: $a" ;; esac
done
exit 0`

// expectNoSleep fails unless the sandbox soon has no sleep process with
// the marker left: a killed command must take everything it started with
// it. The check polls for a few seconds, since the kernel delivers the
// kill asynchronously.
func expectNoSleep(t *testing.T, ctx context.Context, sb *compute.Sandbox, mark string) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(10 * time.Second); ; {
		res := run(t, ctx, sb, []string{"/bin/sh", "-c", scanScript, "sh", mark}, nil)
		if res.ExitCode != 0 {
			t.Fatalf("scanning /proc: exit code %d, stderr %q", res.ExitCode, res.Stderr)
		}
		left = res.Stdout
		if left == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left != "" {
		t.Errorf("processes of the killed command still running 10 s later (want none):\n%s", left)
	}
}

// recorder is an io.Writer that keeps every chunk and when the first came.
type recorder struct {
	mu     sync.Mutex
	first  time.Time
	chunks []string
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		r.first = time.Now()
	}
	r.chunks = append(r.chunks, string(b))
	return len(b), nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.chunks, "")
}

func (r *recorder) firstWrite() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

// isGone reports whether err says the sandbox is gone.
func isGone(err error) bool {
	return errors.Is(err, compute.ErrNotFound) || errors.Is(err, compute.ErrStopped)
}

// within fails if d is not below bound, for commands that must have been
// killed: a correctness bound, not a speed limit.
func within(t *testing.T, what string, d, bound time.Duration) {
	t.Helper()
	if d >= bound {
		t.Errorf("%s took %v; want well below %v (the command was not killed)", what, d.Round(time.Millisecond), bound)
	}
}
