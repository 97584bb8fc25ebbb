package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/computesdk-go/compute/modal/modaltest"
)

// modalEnv starts a Modal emulator and points the environment (which the
// modal provider reads, as Modal's SDK does) at it.
func modalEnv(t *testing.T) *modaltest.Server {
	t.Helper()
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("MODAL_CONFIG_PATH", filepath.Join(t.TempDir(), "missing.toml"))
	t.Setenv("MODAL_PROFILE", "")
	t.Setenv("MODAL_ENVIRONMENT", "")
	return srv
}

func TestSandboxCommandsModal(t *testing.T) {
	srv := modalEnv(t)
	o := cli(t, "", "sandbox", "create", "--timeout", "10m", "--name", "demo", "--port", "8080", "--env", "GREETING=hi")
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || !strings.HasPrefix(id, "sb-") {
		t.Fatalf("sandbox create: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	if o.stderr != "" {
		t.Errorf("sandbox create wrote %q to stderr, which is not a terminal; want nothing", o.stderr)
	}
	if rec, ok := srv.Sandbox(id); !ok || rec.Timeout.Minutes() != 10 || !rec.BlockNetwork {
		t.Errorf("the created sandbox: %+v", rec)
	}

	o = cli(t, "", "sandbox", "list")
	if o.code != 0 || !strings.Contains(o.stdout, id) || !strings.Contains(o.stdout, "demo") || !strings.Contains(o.stdout, "running") {
		t.Errorf("sandbox list: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	cli(t, "", "sandbox", "list", "-q").check(t, 0, id+"\n")

	o = cli(t, "", "sandbox", "info", id)
	for _, want := range []string{"id:", id, "status:", "running", "name:", "demo", "timeout:", "10m0s"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("sandbox info: stdout %q lacks %q (exit %d, stderr %q)", o.stdout, want, o.code, o.stderr)
		}
	}
	o = cli(t, "", "sandbox", "info", "--json", id)
	if o.code != 0 || !strings.Contains(o.stdout, `"status": "running"`) || !strings.Contains(o.stdout, `"timeout": 600000`) {
		t.Errorf("sandbox info --json: exit %d, stdout %q", o.code, o.stdout)
	}

	cli(t, "", "sandbox", "exec", id, "--", "sh", "-c", `echo "$GREETING $X"; exit 3`).check(t, 3, "hi \n")
	cli(t, "", "sandbox", "exec", "-e", "X=there", id, "sh", "-c", `echo "$GREETING $X"`).check(t, 0, "hi there\n")
	cli(t, "in", "sandbox", "exec", "--stdin", id, "--", "cat").check(t, 0, "in")
	o = cli(t, "", "sandbox", "exec", id, "--", "no-such-command")
	o.check(t, 127, "")
	o.stderrContains(t, "no-such-command: command not found")
	o = cli(t, "", "sandbox", "exec", "--timeout", "1s", id, "--", "sleep", "30")
	o.check(t, 124, "")

	o = cli(t, "", "sandbox", "url", id, "8080")
	if o.code != 0 || !strings.HasPrefix(o.stdout, "https://") {
		t.Errorf("sandbox url: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	o = cli(t, "", "sandbox", "url", id, "9999")
	o.check(t, 1, "")
	o.stderrContains(t, "exposed ports: 8080")
	o.stderrContains(t, "compute sandbox create --port PORT")

	cli(t, "", "sandbox", "destroy", id).check(t, 0, "")
	cli(t, "", "sandbox", "destroy", id).check(t, 0, "") // idempotent
	cli(t, "", "sandbox", "list", "-q").check(t, 0, "")
	o = cli(t, "", "sandbox", "info", id)
	o.check(t, 1, "")
	o.stderrContains(t, "not found")
}

func TestRunExecModal(t *testing.T) {
	srv := modalEnv(t)
	cli(t, "", "run", "--provider", "modal", "-c", "print(2 ** 10)").check(t, 0, "1024\n")
	cli(t, "hello", "run", "--provider", "modal", "--stdin", "-c", "import sys; print(sys.stdin.read().upper())").check(t, 0, "HELLO\n")
	cli(t, "", "exec", "--provider", "modal", "--env", "NAME=world", "--", "sh", "-c", "echo hello $NAME").check(t, 0, "hello world\n")
	o := cli(t, "", "run", "--provider", "modal", "-c", "print('unclosed'")
	o.check(t, 1, "")
	o.stderrContains(t, "SyntaxError")
	cli(t, "", "exec", "--provider", "modal", "--timeout", "1s", "--", "sleep", "30").check(t, 124, "")
	cli(t, "", "exec", "--provider", "modal", "--", "no-such-command").check(t, 127, "")
	// run and exec leave no sandbox behind.
	for _, rec := range srv.Sandboxes() {
		if rec.Status == "running" {
			t.Errorf("sandbox %s still running after the commands", rec.ID)
		}
	}
}

func TestModalMissingCredentials(t *testing.T) {
	modalEnv(t)
	t.Setenv("MODAL_TOKEN_ID", "")
	t.Setenv("MODAL_TOKEN_SECRET", "")
	o := cli(t, "", "exec", "--provider", "modal", "--", "true")
	o.check(t, 1, "")
	o.stderrContains(t, "MODAL_TOKEN_ID")
	o = cli(t, "", "sandbox", "list")
	o.check(t, 1, "")
	// Said for a CLI user: the variables and the command that makes a
	// token, not the library's Config fields.
	o.stderrContains(t, "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET")
	o.stderrContains(t, "modal token new")
	if strings.Contains(o.stderr, "modal.Config") {
		t.Errorf("the CLI names the library's Config: %q", o.stderr)
	}
}

func TestSandboxCommandsLocal(t *testing.T) {
	o := cli(t, "", "sandbox", "list", "--provider", "local")
	o.check(t, 2, "")
	o.stderrContains(t, "cannot be managed by id")
}

// Progress goes to a terminal only: never into a pipe or a file.
func TestProgressOnlyOnTerminal(t *testing.T) {
	if progressTo(&syncBuffer{}) != nil {
		t.Error("progress is reported into a buffer; want none")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if progressTo(f) != nil {
		t.Error("progress is reported into a regular file; want none")
	}
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip("skipped: no", os.DevNull)
	}
	defer tty.Close()
	report := progressTo(tty) // a character device, as a terminal is
	if report == nil {
		t.Fatal("no progress for a character device")
	}
	report("building image python:3.13-slim")
}

// Long-lived sandboxes of a compute server, from the CLI: the sandbox a
// create names outlives the command, and every other subcommand reaches it
// through --server alone (no --provider).
func TestSandboxCommandsServer(t *testing.T) {
	s := startServe(t)
	o := cli(t, "", "sandbox", "create", "--server", s.url, "--name", "kept", "--env", "GREETING=hi", "--lifetime", "10m")
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || id == "" {
		t.Fatalf("sandbox create --server: exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	o = cli(t, "", "sandbox", "list", "--server", s.url)
	if o.code != 0 || !strings.Contains(o.stdout, id) || !strings.Contains(o.stdout, "running") || !strings.Contains(o.stdout, "kept") {
		t.Fatalf("sandbox list after create (the sandbox must outlive create): exit %d, stdout %q, stderr %q", o.code, o.stdout, o.stderr)
	}
	o = cli(t, "", "sandbox", "info", "--server", s.url, "--json", id)
	for _, want := range []string{`"id": "` + id + `"`, `"status": "running"`, `"timeout": 600000`, `"name": "kept"`} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("sandbox info --json: %q lacks %q (stderr %q)", o.stdout, want, o.stderr)
		}
	}
	cli(t, "", "sandbox", "exec", "--server", s.url, id, "--", "sh", "-c", `echo "$GREETING" > f; cat f`).check(t, 0, "hi\n")
	cli(t, "", "sandbox", "exec", "--server", s.url, id, "--", "cat", "f").check(t, 0, "hi\n") // state kept between commands
	cli(t, "", "sandbox", "destroy", "--server", s.url, id).check(t, 0, "")
	o = cli(t, "", "sandbox", "exec", "--server", s.url, id, "--", "true")
	if o.code == 0 {
		t.Errorf("exec in a destroyed sandbox succeeded")
	}
	if o := cli(t, "", "sandbox", "list", "--server", s.url, "-q"); strings.Contains(o.stdout, id) {
		t.Errorf("destroyed sandbox still listed: %q", o.stdout)
	}
	o = cli(t, "", "sandbox", "list", "--server", s.url, "--provider", "modal")
	o.check(t, 2, "")
	o.stderrContains(t, "cannot be combined")
	o = cli(t, "", "sandbox", "create", "--server", s.url, "--gpu", "T4")
	o.check(t, 2, "")
	o.stderrContains(t, "--gpu is a flag of the modal provider")
}
