package compute_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/computesdk-go/compute"
)

// The generic layer of *compute.Sandbox (output capture, exit codes,
// timeouts, cancellation, Cmd, the filesystem and its io/fs view) on the
// in-memory provider, so that it is checked on every OS; the conformance
// suite checks it on the real providers.
func TestSandboxOnFake(t *testing.T) {
	ctx := testContext(t)
	p := newFake("fake")
	sb := create(t, ctx, compute.New(compute.Config{Provider: p}), &compute.CreateOptions{Env: map[string]string{"BASE": "1"}, Dir: "app"})

	run := func(argv []string, opts *compute.RunOptions) *compute.Result {
		t.Helper()
		res, err := sb.Run(ctx, argv, opts)
		if err != nil {
			t.Fatalf("Run(%q): %v", argv, err)
		}
		return res
	}
	if res := run([]string{"echo", "a", "b"}, nil); res.Stdout != "a b\n" || res.Stderr != "" || res.ExitCode != 0 {
		t.Errorf("echo a b = %+v; want stdout %q, exit 0", res, "a b\n")
	}
	if res := run([]string{"exit", "3", "oops"}, nil); res.ExitCode != 3 || res.Stderr != "oops\n" || res.Stdout != "" {
		t.Errorf("exit 3 oops = %+v; want exit code 3 and stderr %q", res, "oops\n")
	}
	if res := run([]string{"/bin/false"}, nil); res.ExitCode != 1 {
		t.Errorf("/bin/false exit code %d; want 1", res.ExitCode)
	}
	if res := run([]string{"nope"}, nil); res.ExitCode != compute.ExitCodeNotFound || !strings.Contains(res.Stderr, "command not found") {
		t.Errorf("nope = %+v; want exit code %d and a message", res, compute.ExitCodeNotFound)
	}
	if res := run([]string{"cat"}, &compute.RunOptions{Stdin: strings.NewReader("in put")}); res.Stdout != "in put" {
		t.Errorf("cat with stdin: stdout %q; want %q", res.Stdout, "in put")
	}
	if res := run([]string{"pwd"}, nil); res.Stdout != "/work/app\n" {
		t.Errorf("pwd = %q; want the sandbox's Dir, /work/app", res.Stdout)
	}
	if res := run([]string{"env"}, &compute.RunOptions{Env: map[string]string{"X": "y"}}); !strings.Contains(res.Stdout, "BASE=1\n") || !strings.Contains(res.Stdout, "X=y\n") {
		t.Errorf("env = %q; want the sandbox's and the command's variables", res.Stdout)
	}
	var live bytes.Buffer
	if res := run([]string{"echo", "streamed"}, &compute.RunOptions{Stdout: &live, MaxOutput: -1}); live.String() != "streamed\n" || res.Stdout != "" {
		t.Errorf("echo with Stdout and MaxOutput -1: writer %q, Result.Stdout %q; want the writer to get it all and the Result nothing", live.String(), res.Stdout)
	}

	// A timeout kills the command: exit code 124 and ErrTimeout.
	res, err := sb.Run(ctx, []string{"sleep", "60"}, &compute.RunOptions{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, compute.ErrTimeout) || res == nil || res.ExitCode != compute.ExitCodeTimeout {
		t.Errorf("sleep 60 with a timeout = %+v, %v; want exit code 124 and ErrTimeout", res, err)
	}
	// Cancelling the context kills it too, with the code of its death.
	cctx, cancel := context.WithCancel(ctx)
	proc, err := sb.Start(cctx, []string{"sleep", "60"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	res, err = proc.Wait()
	if !errors.Is(err, context.Canceled) || res.ExitCode != 137 {
		t.Errorf("sleep 60 cancelled = %+v, %v; want exit code 137 and context.Canceled", res, err)
	}

	// Cmd: an ExitError for a failure, both streams in one writer in order.
	err = sb.Command("exit", "2", "bad").Run()
	var ee *compute.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("Cmd.Run of exit 2: %v (%T); want a *compute.ExitError", err, err)
	}
	out, err := sb.Command("cat", "missing").CombinedOutput()
	if err == nil || string(out) != "cat: missing: open /work/app/missing: file does not exist\n" {
		t.Errorf("CombinedOutput of cat missing = %q, %v; want cat's message and an error", out, err)
	}

	// The filesystem, native and in memory.
	f := sb.FileSystem()
	if err := f.WriteFile(ctx, "data/a.txt", []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := f.MkdirAll(ctx, "data/empty"); err != nil {
		t.Fatal(err)
	}
	if res := run([]string{"cat", "data/a.txt"}, nil); res.Stdout != "alpha" {
		t.Errorf("cat of a file written through FileSystem: %q; want %q", res.Stdout, "alpha")
	}
	if got, err := f.ReadFile(ctx, "/work/app/data/a.txt"); err != nil || string(got) != "alpha" {
		t.Errorf("ReadFile by absolute path = %q, %v; want %q", got, err, "alpha")
	}
	if _, err := f.ReadFile(ctx, "data/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v; want fs.ErrNotExist", err)
	}
	if err := fstest.TestFS(f.FS(ctx, "data"), "a.txt", "empty"); err != nil {
		t.Errorf("fstest on the io/fs view: %v", err)
	}
	if err := f.RemoveAll(ctx, "data"); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Exists(ctx, "data/a.txt"); ok || err != nil {
		t.Errorf("Exists after Remove of the parent = %v, %v; want false, nil", ok, err)
	}
}

// A sandbox's Timeout is its lifetime: the fake destroys it then, and the
// router reports it gone.
func TestSandboxLifetimeOnFake(t *testing.T) {
	ctx := testContext(t)
	p := newFake("fake")
	c := compute.New(compute.Config{Provider: p})
	sb := create(t, ctx, c, &compute.CreateOptions{Timeout: 50 * time.Millisecond})
	proc, err := sb.Start(ctx, []string{"sleep", "60"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := proc.Wait() // returns once the lifetime has ended the sandbox
	if err != nil || res.ExitCode != 137 {
		t.Errorf("a command outliving its sandbox = %+v, %v; want exit code 137", res, err)
	}
	if _, err := c.Get(ctx, sb.ID()); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("Get after the sandbox's lifetime: %v; want ErrNotFound", err)
	}
}
