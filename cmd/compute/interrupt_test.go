package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// Threat: a Modal that stops answering kept `compute exec --provider
// modal` running for 11+ minutes, deaf to SIGTERM. The CLI must end on
// its own when Modal goes away, and always exit on a signal: after a
// bounded cleanup, with 130 (SIGINT) or 143 (SIGTERM).
//
// No test here measures time against a limit: each waits for the CLI
// under a generous hang guard, which fails the test if it has not exited.

// cliHangGuard is how long the CLI may run before a test calls it hung.
const cliHangGuard = 3 * time.Minute

// TestCLIHelperProcess is not a test: it is the CLI, for the tests that
// run it as a separate process (to send it real signals and see it exit).
// Its arguments follow "--" on the test binary's command line.
func TestCLIHelperProcess(t *testing.T) {
	if os.Getenv("COMPUTE_CLI_HELPER") != "1" {
		t.Skip("not a test: the CLI run as a subprocess by the signal tests")
	}
	i := slices.Index(os.Args, "--")
	os.Args = append([]string{"compute"}, os.Args[i+1:]...)
	main()
}

// cliProcess is the CLI started as a subprocess by startCLI.
type cliProcess struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// startCLI runs the CLI with args in a subprocess, with this process's
// environment (which modalEnv points at the emulator).
func startCLI(t *testing.T, args ...string) *cliProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCLIHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "COMPUTE_CLI_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &cliProcess{cmd: cmd, stdout: bufio.NewReader(out), stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// waitLine waits for a line of the CLI's output.
func (c *cliProcess) waitLine(t *testing.T, want string) {
	t.Helper()
	line, err := c.stdout.ReadString('\n')
	if strings.TrimSpace(line) != want {
		t.Fatalf("the CLI printed %q (%v); want %q\nstderr:\n%s", line, err, want, c.stderr.String())
	}
}

// exitCode waits for the CLI to exit and returns its exit code.
func (c *cliProcess) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(cliHangGuard):
		t.Fatalf("the CLI has not exited after %v: it hangs\nstderr:\n%s", cliHangGuard, c.stderr.String())
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		t.Fatalf("the CLI: %v", c.err)
	}
	return c.cmd.ProcessState.ExitCode()
}

// Threat: the CLI ignored SIGTERM while the provider waited on a Modal
// that stopped answering. Here every call that could end the command or
// the sandbox hangs (the kill's exec, the exit status, the destroy): the
// CLI must still exit after its bounded cleanup, with 128+signal, saying
// what it left.
func TestSignalWhileModalHangs(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := modalEnv(t)
			c := startCLI(t, "exec", "--provider", "modal", "--", "sh", "-c", "echo started; exec sleep 3600")
			c.waitLine(t, "started")
			for _, rpc := range []string{"TaskExecStart", "TaskExecWait", "SandboxTerminateV2"} {
				srv.Inject(rpc, modaltest.Fault{Delay: time.Hour})
			}
			start := time.Now()
			if err := c.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code := c.exitCode(t)
			t.Logf("exited %d, %v after the signal; stderr:\n%s", code, time.Since(start).Round(time.Millisecond), c.stderr.String())
			if want := 128 + int(sig); code != want {
				t.Errorf("the CLI exited %d after %v; want %d", code, sig, want)
			}
			stderr := c.stderr.String()
			if !strings.Contains(stderr, "cleanup did not finish") || !strings.Contains(stderr, "sb-") {
				t.Errorf("stderr %q does not say the cleanup was cut short, and which sandbox it left", stderr)
			}
		})
	}
}

// A SIGTERM with Modal answering: exit 143 after a full cleanup (the
// sandbox destroyed), without the cut-short line.
func TestSignalCleansUp(t *testing.T) {
	srv := modalEnv(t)
	c := startCLI(t, "exec", "--provider", "modal", "--", "sh", "-c", "echo started; exec sleep 3600")
	c.waitLine(t, "started")
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := c.exitCode(t)
	stderr := c.stderr.String()
	if code != 143 || !strings.Contains(stderr, "compute: interrupted") || strings.Contains(stderr, "cleanup did not finish") {
		t.Errorf("after SIGTERM: exit %d, stderr %q; want exit 143 and only the interrupted line", code, stderr)
	}
	for _, rec := range srv.Sandboxes() {
		if rec.Status == "running" {
			t.Errorf("sandbox %s still running after the CLI exited", rec.ID)
		}
	}
}

// Threat: with the emulator killed mid-command, `compute exec --provider
// modal` hung (11+ minutes). With no signal and no --timeout, it must end
// by itself with an error that says Modal stopped answering.
func TestExecModalGoneMidCommand(t *testing.T) {
	srv := modalEnv(t)
	var stdout, stderr syncBuffer
	var once sync.Once
	stdout.onWrite = func() {
		if strings.Contains(stdout.String(), "started") {
			once.Do(func() { go srv.Close() })
		}
	}
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"exec", "--provider", "modal", "--", "sh", "-c", "echo started; exec sleep 3600"}, strings.NewReader(""), &stdout, &stderr)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(cliHangGuard):
		t.Fatalf("compute exec has not returned %v after Modal went away: it hangs\nstderr:\n%s", cliHangGuard, stderr.String())
	}
	if code != exitFailure || !strings.Contains(stderr.String(), "Modal stopped answering") {
		t.Errorf("compute exec with Modal gone: exit %d, stderr %q; want exit 1 saying Modal stopped answering", code, stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
}
