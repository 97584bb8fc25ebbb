package computetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

func (s *suite) testCmd(t *testing.T) {
	t.Run("Output", func(t *testing.T) {
		t.Parallel()
		sb := s.sandbox(t, nil)
		out, err := sb.Command("echo", "hello", "world").Output()
		if err != nil || string(out) != "hello world\n" {
			t.Errorf("Command(echo hello world).Output() = %q, %v; want %q, nil", out, err, "hello world\n")
		}
		out, err = sb.Command("sh", "-c", "echo partial; echo oops >&2; exit 2").Output()
		var ee *compute.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("Output() of a failing command: error %v (%T); want *compute.ExitError", err, err)
		}
		if ee.ExitCode != 2 || string(ee.Stderr) != "oops\n" || string(out) != "partial\n" {
			t.Errorf("Output() of a failing command = %q, ExitError{ExitCode: %d, Stderr: %q}; want %q, 2, %q", out, ee.ExitCode, ee.Stderr, "partial\n", "oops\n")
		}
	})

	t.Run("CombinedOutput", func(t *testing.T) {
		t.Parallel()
		sb := s.sandbox(t, nil)
		// One writer for both streams: the order of the writes is kept.
		out, err := sb.Command("sh", "-c", "echo a; echo b >&2; echo c").CombinedOutput()
		if err != nil || string(out) != "a\nb\nc\n" {
			t.Errorf("CombinedOutput() = %q, %v; want %q, nil", out, err, "a\nb\nc\n")
		}
	})

	t.Run("Run", func(t *testing.T) {
		t.Parallel()
		sb := s.sandbox(t, nil)
		var stdout, stderr bytes.Buffer
		cmd := sb.Command("sh", "-c", "echo to-out; echo to-err >&2; exit 7")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *compute.ExitError
		if !errors.As(err, &ee) || ee.ExitCode != 7 {
			t.Errorf("Run() of exit 7: error %v; want *compute.ExitError with ExitCode 7", err)
		}
		if stdout.String() != "to-out\n" || stderr.String() != "to-err\n" {
			t.Errorf("Run() wrote stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), "to-out\n", "to-err\n")
		}
		if cmd.Result == nil || cmd.Result.ExitCode != 7 {
			t.Errorf("Cmd.Result after Run = %+v; want ExitCode 7", cmd.Result)
		}
		if err := sb.Command("true").Run(); err != nil {
			t.Errorf("Command(true).Run() = %v; want nil", err)
		}
		err = sb.Command("computetest-no-such-command-12345").Run()
		if !errors.Is(err, compute.ErrCommandNotFound) {
			t.Errorf("Run() of a missing command: error %v; want one matching compute.ErrCommandNotFound", err)
		}
	})

	t.Run("StartWait", func(t *testing.T) {
		t.Parallel()
		sb := s.sandbox(t, nil)
		var out bytes.Buffer
		cmd := sb.Command("sh", "-c", "sleep 0.5; echo waited")
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("Start(): %v", err)
		}
		if cmd.Process == nil {
			t.Fatalf("Cmd.Process = nil after Start")
		}
		if err := cmd.Start(); err == nil {
			t.Errorf("second Start(): nil error; want an error")
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("Wait(): %v", err)
		}
		if out.String() != "waited\n" || cmd.Result == nil || cmd.Result.ExitCode != 0 {
			t.Errorf("after Wait: stdout %q, Result %+v; want %q, exit 0", out.String(), cmd.Result, "waited\n")
		}
		if err := cmd.Wait(); err == nil {
			t.Errorf("second Wait(): nil error; want an error")
		}
	})

	t.Run("EnvDirStdin", func(t *testing.T) {
		t.Parallel()
		sb := s.sandbox(t, nil)
		cmd := sb.Command("sh", "-c", `printf '%s|%s|' "$K" "$A"; pwd; cat`)
		cmd.Env = []string{"K=V", "A=b=c"}
		cmd.Dir = "/tmp"
		cmd.Stdin = strings.NewReader("from stdin")
		out, err := cmd.Output()
		if want := "V|b=c|/tmp\nfrom stdin"; err != nil || string(out) != want {
			t.Errorf("Output() with Env, Dir, Stdin = %q, %v; want %q, nil", out, err, want)
		}
		bad := sb.Command("true")
		bad.Env = []string{"NOEQUALS"}
		if err := bad.Run(); err == nil {
			t.Errorf("Run() with Env entry %q: nil error; want an error", "NOEQUALS")
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		cmd := sb.Command("sleep", mark)
		cmd.Timeout = time.Second
		start := time.Now()
		err := cmd.Run()
		within(t, "Cmd.Run with a 1s Timeout", time.Since(start), killBound)
		if !errors.Is(err, compute.ErrTimeout) {
			t.Errorf("Run() past Timeout: error %v; want one matching compute.ErrTimeout", err)
		}
		expectNoSleep(t, ctx, sb, mark)
	})

	t.Run("Context", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		cmdCtx, cancel := context.WithCancel(ctx)
		time.AfterFunc(500*time.Millisecond, cancel)
		start := time.Now()
		err := sb.CommandContext(cmdCtx, "sleep", mark).Run()
		within(t, "Cmd.Run whose context was cancelled", time.Since(start), killBound)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("CommandContext(cancelled).Run(): error %v; want context.Canceled", err)
		}
		expectNoSleep(t, ctx, sb, mark)
	})
}
