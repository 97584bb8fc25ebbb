package computetest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

func (s *suite) testCommand(t *testing.T) {
	t.Run("Echo", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		res, err := sb.RunCommand(ctx, "echo", "Hello from command")
		if err != nil {
			t.Fatalf("RunCommand(echo): %v", err)
		}
		if res.Stdout != "Hello from command\n" || res.Stderr != "" || res.ExitCode != 0 {
			t.Errorf("RunCommand(echo) = stdout %q, stderr %q, exit %d; want %q, %q, 0", res.Stdout, res.Stderr, res.ExitCode, "Hello from command\n", "")
		}
		if res.Duration <= 0 {
			t.Errorf("Result.Duration = %v; want > 0", res.Duration)
		}
		if res.Runtime != "" || res.Truncated {
			t.Errorf("Result = %+v; want no Runtime, not Truncated for a plain command", res)
		}
	})

	t.Run("LiteralArgs", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		// No shell may see these: each must arrive as one argument, byte
		// for byte.
		args := []string{"a b", `"q"`, "$HOME", "`x`", "'single'", `back\slash`, "*", "", ";", "&& exit 1", "$(id)", "new\nline", "tab\there", "ünï 日本 😀", "--", "-n"}
		res, err := sb.RunCommand(ctx, "printf", append([]string{"%s|"}, args...)...)
		if err != nil {
			t.Fatalf("RunCommand(printf): %v", err)
		}
		want := strings.Join(args, "|") + "|"
		if res.Stdout != want || res.ExitCode != 0 {
			t.Errorf("RunCommand(printf, %q) = stdout %q, exit %d, stderr %q\nwant stdout %q, exit 0", args, res.Stdout, res.ExitCode, res.Stderr, want)
		}
	})

	t.Run("Shell", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		tmp := scratch(t, sb)
		for _, c := range []struct{ script, want string }{
			{`printf 'a\nb\nc\n' | wc -l | tr -d ' '`, "3\n"},
			{`echo "hello world"`, "hello world\n"},
			{`mkdir -p ` + tmp + ` && echo "test content" > ` + tmp + `/x && cat ` + tmp + `/x`, "test content\n"},
			{`x=1; y=$((x + 41)); echo "$y"`, "42\n"},
		} {
			res, err := sb.RunShell(ctx, c.script, nil)
			if err != nil {
				t.Fatalf("RunShell(%q): %v", c.script, err)
			}
			if res.Stdout != c.want || res.ExitCode != 0 {
				t.Errorf("RunShell(%q) = stdout %q, exit %d, stderr %q; want %q, 0", c.script, res.Stdout, res.ExitCode, res.Stderr, c.want)
			}
		}
		res, err := sb.RunShell(ctx, `echo "$HOME"`, nil)
		if err != nil {
			t.Fatalf("RunShell(echo $HOME): %v", err)
		}
		if home := strings.TrimSpace(res.Stdout); home == "" || res.ExitCode != 0 {
			t.Errorf("RunShell(echo \"$HOME\") = stdout %q, exit %d; want a non-empty HOME", res.Stdout, res.ExitCode)
		}
	})

	t.Run("ExitCodes", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		for _, c := range []struct {
			script string
			want   int
		}{
			{"exit 0", 0}, {"exit 1", 1}, {"exit 42", 42}, {"exit 255", 255},
			{"kill -KILL $$", 128 + 9}, {"kill -TERM $$", 128 + 15},
		} {
			res, err := sb.RunShell(ctx, c.script, nil)
			if err != nil {
				t.Errorf("RunShell(%q): %v; want nil error (a non-zero exit is not an error)", c.script, err)
				continue
			}
			if res.ExitCode != c.want {
				t.Errorf("RunShell(%q).ExitCode = %d; want %d", c.script, res.ExitCode, c.want)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		for _, name := range []string{"computetest-no-such-command-12345", "/nonexistent/computetest/bin/x"} {
			res, err := sb.RunCommand(ctx, name)
			if err != nil {
				t.Errorf("RunCommand(%q): %v; want nil error and exit code 127", name, err)
			} else if res.ExitCode != compute.ExitCodeNotFound {
				t.Errorf("RunCommand(%q).ExitCode = %d; want %d", name, res.ExitCode, compute.ExitCodeNotFound)
			}
			p, err := sb.Start(ctx, []string{name}, nil)
			if !errors.Is(err, compute.ErrCommandNotFound) {
				t.Errorf("Start(%q) error = %v; want one matching compute.ErrCommandNotFound", name, err)
			}
			if p != nil {
				p.Kill()
			}
		}
		res, err := sb.RunShell(ctx, "computetest-no-such-command-12345", nil)
		if err != nil || res.ExitCode != compute.ExitCodeNotFound {
			t.Errorf("RunShell(missing command) = %+v, %v; want exit code 127 from the shell, nil error", res, err)
		}
	})

	t.Run("Background", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		// A command started with a context that cannot be canceled outlives
		// the caller's: cancel the caller's right after Start returns and
		// the command still finishes.
		runCtx, cancel := context.WithCancel(ctx)
		proc, err := sb.Start(context.WithoutCancel(runCtx), []string{"/bin/sh", "-c", "sleep 1; echo done"}, nil)
		cancel()
		if err != nil {
			t.Fatalf("Start(sleep 1): %v", err)
		}
		final, err := proc.Wait()
		if err != nil {
			t.Fatalf("Process.Wait: %v", err)
		}
		if final.ExitCode != 0 || final.Stdout != "done\n" {
			t.Errorf("Process.Wait() = exit %d, stdout %q, stderr %q; want 0, %q", final.ExitCode, final.Stdout, final.Stderr, "done\n")
		}
		if final.Duration < 900*time.Millisecond {
			t.Errorf("background sleep 1 ended after %v; want about 1s (was it run?)", final.Duration)
		}
		select {
		case <-proc.Done():
		default:
			t.Errorf("Process.Done() not closed after Wait returned")
		}
		again, err := proc.Wait()
		if err != nil || again.ExitCode != 0 {
			t.Errorf("second Process.Wait() = %+v, %v; want the same result", again, err)
		}
	})

	t.Run("Kill", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		start := time.Now()
		proc, err := sb.Start(ctx, []string{"sleep", mark}, nil)
		if err != nil {
			t.Fatalf("Start(sleep): %v", err)
		}
		select {
		case <-proc.Done():
			r, err := proc.Wait()
			t.Fatalf("background sleep %s ended at once: %+v, %v; want it running", mark, r, err)
		default:
		}
		if err := proc.Kill(); err != nil {
			t.Errorf("Process.Kill: %v", err)
		}
		final, err := proc.Wait()
		within(t, "Wait after Kill", time.Since(start), killBound)
		if err != nil {
			t.Errorf("Process.Wait after Kill: %v; want nil error and a non-zero exit", err)
		} else if final.ExitCode == 0 {
			t.Errorf("Process.Wait after Kill: exit code 0; want non-zero (137 for SIGKILL)")
		}
		if err := proc.Kill(); err != nil {
			t.Errorf("second Process.Kill after exit: %v; want nil", err)
		}
		expectNoSleep(t, ctx, sb, mark)
	})

	t.Run("Streaming", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		out := &recorder{}
		start := time.Now()
		res, err := sb.RunShell(ctx, `for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done`, &compute.RunOptions{Stdout: out})
		if err != nil {
			t.Fatalf("RunShell(ticks): %v", err)
		}
		want := "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n"
		if res.ExitCode != 0 || res.Stdout != want {
			t.Errorf("RunShell(ticks) = exit %d, stdout %q, stderr %q; want 0, %q", res.ExitCode, res.Stdout, res.Stderr, want)
		}
		if got := out.String(); got != res.Stdout {
			t.Errorf("chunks written to RunOptions.Stdout join to %q; want Result.Stdout %q", got, res.Stdout)
		}
		first := out.firstWrite()
		if first.IsZero() {
			t.Fatalf("RunOptions.Stdout was never written to")
		}
		// Output must arrive while the command runs, not all at its end.
		if lag := first.Sub(start); lag >= res.Duration/2 {
			t.Errorf("first output arrived %v after start, the command ran %v; want it within the first half (output is not streamed)", lag, res.Duration)
		}
	})

	t.Run("Stderr", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		stdout, stderr := &recorder{}, &recorder{}
		res, err := sb.RunShell(ctx, "echo out; echo err 1>&2; exit 3", &compute.RunOptions{Stdout: stdout, Stderr: stderr})
		if err != nil {
			t.Fatalf("RunShell: %v; want nil error for a non-zero exit", err)
		}
		if res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" {
			t.Errorf("RunShell(echo out; echo err 1>&2; exit 3) = exit %d, stdout %q, stderr %q; want 3, %q, %q", res.ExitCode, res.Stdout, res.Stderr, "out\n", "err\n")
		}
		if stdout.String() != "out\n" || stderr.String() != "err\n" {
			t.Errorf("streamed stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), "out\n", "err\n")
		}
	})

	t.Run("LargeOutput", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		const n = 4 << 20
		res := run(t, ctx, sb, []string{"/bin/sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' x; echo done >&2"}, nil)
		if res.ExitCode != 0 || len(res.Stdout) != n || strings.Trim(res.Stdout, "x") != "" || res.Stderr != "done\n" || res.Truncated {
			t.Errorf("4 MiB of output: exit %d, %d bytes of stdout (only x: %v), stderr %q, truncated %v; want 0, %d, true, %q, false",
				res.ExitCode, len(res.Stdout), strings.Trim(res.Stdout, "x") == "", res.Stderr, res.Truncated, n, "done\n")
		}

		all := &recorder{}
		res = run(t, ctx, sb, []string{"printf", "0123456789abcdef"}, &compute.RunOptions{MaxOutput: 10, Stdout: all})
		if res.Stdout != "0123456789" || !res.Truncated || all.String() != "0123456789abcdef" {
			t.Errorf("MaxOutput 10: Result.Stdout %q, Truncated %v, writer got %q; want %q, true, %q", res.Stdout, res.Truncated, all.String(), "0123456789", "0123456789abcdef")
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		out := &recorder{}
		start := time.Now()
		res, err := sb.RunShell(ctx, "echo starting; sleep "+mark, &compute.RunOptions{Timeout: 2 * time.Second, Stdout: out})
		within(t, "a command with a 2s timeout", time.Since(start), killBound)
		if !errors.Is(err, compute.ErrTimeout) {
			t.Errorf("RunShell(sleep, Timeout 2s) error = %v; want one matching compute.ErrTimeout", err)
		}
		if res == nil {
			t.Fatalf("RunShell(sleep, Timeout 2s) result = nil; want the partial result")
		}
		if res.ExitCode != compute.ExitCodeTimeout {
			t.Errorf("Result.ExitCode = %d; want %d", res.ExitCode, compute.ExitCodeTimeout)
		}
		if res.Stdout != "starting\n" || out.String() != "starting\n" {
			t.Errorf("output before the timeout: Result.Stdout %q, streamed %q; want %q in both", res.Stdout, out.String(), "starting\n")
		}
		if res.Duration < 2*time.Second {
			t.Errorf("Result.Duration = %v; want at least the 2s timeout", res.Duration)
		}
		expectNoSleep(t, ctx, sb, mark)
	})

	t.Run("TimeoutKillsDescendants", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		start := time.Now()
		res, err := sb.Run(ctx, []string{"sh", "-c", "sleep " + mark + " & sleep " + mark + " & wait"}, &compute.RunOptions{Timeout: time.Second})
		within(t, "a command with a 1s timeout whose children sleep", time.Since(start), killBound)
		if !errors.Is(err, compute.ErrTimeout) {
			t.Errorf("error = %v; want one matching compute.ErrTimeout", err)
		}
		if res == nil || res.ExitCode != compute.ExitCodeTimeout {
			t.Errorf("result = %+v; want exit code %d", res, compute.ExitCodeTimeout)
		}
		expectNoSleep(t, ctx, sb, mark)
	})

	t.Run("Cancel", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		mark := marker()
		runCtx, cancel := context.WithCancel(ctx)
		time.AfterFunc(500*time.Millisecond, cancel)
		start := time.Now()
		_, err := sb.RunCommand(runCtx, "sleep", mark)
		within(t, "a command whose context was cancelled after 500ms", time.Since(start), killBound)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RunCommand(sleep) with a cancelled context: error %v; want context.Canceled", err)
		}
		expectNoSleep(t, ctx, sb, mark)

		// A context cancelled before the call starts nothing.
		_, err = sb.RunCommand(runCtx, "sh", "-c", "echo ran > computetest-cancelled")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RunCommand with an already cancelled context: error %v; want context.Canceled", err)
		}
		if res := run(t, ctx, sb, []string{"sh", "-c", "test -e computetest-cancelled"}, nil); res.ExitCode == 0 {
			t.Errorf("a command given an already cancelled context ran anyway")
		}
	})

	t.Run("Env", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		special := "a b $HOME `x` \"q\" 'y' \\ é\nline2"
		sb := s.sandbox(t, &compute.CreateOptions{Env: map[string]string{
			"CT_CREATE": "from create", "CT_BOTH": "create", "CT_SPECIAL": special, "CT_EMPTY": "",
		}})
		script := `printf '%s|%s|%s|%s|%s' "$CT_CREATE" "$CT_BOTH" "$CT_SPECIAL" "${CT_RUN-unset}" "${CT_EMPTY-unset}"`
		res := run(t, ctx, sb, []string{"sh", "-c", script}, nil)
		if want := "from create|create|" + special + "|unset|"; res.Stdout != want {
			t.Errorf("CreateOptions.Env: got %q; want %q", res.Stdout, want)
		}
		res = run(t, ctx, sb, []string{"sh", "-c", script}, &compute.RunOptions{Env: map[string]string{"CT_BOTH": "run", "CT_RUN": "r"}})
		if want := "from create|run|" + special + "|r|"; res.Stdout != want {
			t.Errorf("RunOptions.Env over CreateOptions.Env: got %q; want %q", res.Stdout, want)
		}
		// RunOptions.Env lasts one command.
		res = run(t, ctx, sb, []string{"sh", "-c", script}, nil)
		if want := "from create|create|" + special + "|unset|"; res.Stdout != want {
			t.Errorf("after a command with RunOptions.Env: got %q; want %q", res.Stdout, want)
		}
		res = run(t, ctx, sb, []string{"sh", "-c", `printf '%s|%s' "$PATH" "$HOME"`}, nil)
		if p, h, _ := strings.Cut(res.Stdout, "|"); p == "" || h == "" {
			t.Errorf("PATH|HOME = %q; want both set in the base environment", res.Stdout)
		}
	})

	t.Run("Dir", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		wd := workDir(t, ctx, sb)
		tmp := scratch(t, sb)
		shell(t, ctx, sb, "mkdir -p "+tmp+"/sub rel/sub")
		for _, c := range []struct{ dir, want string }{
			{tmp + "/sub", tmp + "/sub"},
			{"rel/sub", path.Join(wd, "rel/sub")},
			{"", wd},
		} {
			res := run(t, ctx, sb, []string{"pwd"}, &compute.RunOptions{Dir: c.dir})
			if got := strings.TrimSuffix(res.Stdout, "\n"); got != c.want || res.ExitCode != 0 {
				t.Errorf("pwd with RunOptions.Dir %q = %q (exit %d, stderr %q); want %q", c.dir, got, res.ExitCode, res.Stderr, c.want)
			}
		}
		res, err := sb.Run(ctx, []string{"pwd"}, &compute.RunOptions{Dir: tmp + "/no-such-dir"})
		if err == nil && res.ExitCode == 0 {
			t.Errorf("pwd in a missing RunOptions.Dir succeeded with %q; want an error or a non-zero exit", res.Stdout)
		}
	})

	t.Run("CreateDir", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, &compute.CreateOptions{Dir: "/tmp"})
		if wd := workDir(t, ctx, sb); wd != "/tmp" {
			t.Errorf("pwd in a sandbox created with Dir /tmp = %q; want /tmp", wd)
		}
		tmp := scratch(t, sb) // /tmp/computetest-...
		rel := path.Base(tmp)
		shell(t, ctx, sb, "mkdir -p "+tmp)
		res := run(t, ctx, sb, []string{"pwd"}, &compute.RunOptions{Dir: rel})
		if got := strings.TrimSuffix(res.Stdout, "\n"); got != tmp {
			t.Errorf("pwd with RunOptions.Dir %q in a sandbox created with Dir /tmp = %q; want %q", rel, got, tmp)
		}
		if err := sb.FileSystem().WriteFile(ctx, rel+"/rel.txt", []byte("rel")); err != nil {
			t.Fatalf("WriteFile(relative): %v", err)
		}
		if got := shell(t, ctx, sb, "cat "+tmp+"/rel.txt"); got != "rel" {
			t.Errorf("WriteFile(%s/rel.txt) in a sandbox created with Dir /tmp: %s/rel.txt holds %q; want %q", rel, tmp, got, "rel")
		}
	})

	t.Run("Stdin", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		sb := s.sandbox(t, nil)
		data := make([]byte, 1<<20)
		crand.Read(data)
		res := run(t, ctx, sb, []string{"cat"}, &compute.RunOptions{Stdin: bytes.NewReader(data)})
		if res.ExitCode != 0 || res.Stdout != string(data) {
			t.Errorf("cat of 1 MiB of random stdin: exit %d, %d bytes back, equal %v, stderr %q; want 0, %d, true", res.ExitCode, len(res.Stdout), res.Stdout == string(data), res.Stderr, len(data))
		}
		res = run(t, ctx, sb, []string{"wc", "-c"}, &compute.RunOptions{Stdin: bytes.NewReader(data)})
		if got := strings.TrimSpace(res.Stdout); got != "1048576" {
			t.Errorf("wc -c of 1 MiB of stdin = %q; want 1048576", got)
		}
		// No Stdin is empty input, not a hang.
		res = run(t, ctx, sb, []string{"cat"}, nil)
		if res.ExitCode != 0 || res.Stdout != "" {
			t.Errorf("cat with no Stdin = exit %d, stdout %q; want 0, empty", res.ExitCode, res.Stdout)
		}
		// A command that never reads its input ends normally.
		big := bytes.Repeat([]byte("y"), 8<<20)
		res, err := sb.Run(ctx, []string{"true"}, &compute.RunOptions{Stdin: bytes.NewReader(big)})
		if err != nil || res.ExitCode != 0 {
			t.Errorf("true with 8 MiB of unread stdin = %+v, %v; want exit 0, nil error", res, err)
		}
	})
}
