package modaltest_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"
	"google.golang.org/grpc/codes"

	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestExecOutputStdinAndCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)

	out, errOut, code := h.run(sb, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, nil)
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Errorf("got %q %q %d; want \"out\\n\" \"err\\n\" 3", out, errOut, code)
	}

	// stdin, written in pieces and closed.
	p, err := sb.Exec(h.ctx, []string{"sh", "-c", "tr a-z A-Z; echo done"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"hello ", "world\n"} {
		if _, err := p.Stdin.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _, code := h.collect(p); out != "HELLO WORLD\ndone\n" || code != 0 {
		t.Errorf("tr: %q %d", out, code)
	}

	// Large binary output, read whole, and again from the start after exit.
	p, err = sb.Exec(h.ctx, []string{"head", "-c", "3000000", "/dev/urandom"}, &modal.SandboxExecParams{Stderr: modal.Ignore})
	if err != nil {
		t.Fatal(err)
	}
	big, err := io.ReadAll(p.Stdout)
	if err != nil || len(big) != 3000000 {
		t.Fatalf("read %d bytes, %v; want 3000000", len(big), err)
	}
	if code, err := p.Wait(h.ctx, nil); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v", code, err)
	}

	// A signal: 128 + n.
	if _, _, code := h.run(sb, []string{"sh", "-c", "kill -TERM $$"}, nil); code != 143 {
		t.Errorf("kill -TERM $$: exit %d, want 143", code)
	}
	// No such command: 127, and why on stderr.
	if _, errOut, code := h.run(sb, []string{"no-such-command"}, nil); code != 127 || !strings.Contains(errOut, "no-such-command") {
		t.Errorf("no-such-command: exit %d, stderr %q", code, errOut)
	}
	// Ignored output reads as empty.
	if out, _, _ := h.run(sb, []string{"echo", "x"}, &modal.SandboxExecParams{Stdout: modal.Ignore}); out != "" {
		t.Errorf("ignored stdout = %q", out)
	}
	// PTY: stderr goes to stdout.
	if out, errOut, _ := h.run(sb, []string{"sh", "-c", "echo a; echo b >&2"}, &modal.SandboxExecParams{PTY: true}); !strings.Contains(out, "b") || errOut != "" {
		t.Errorf("PTY: stdout %q stderr %q", out, errOut)
	}
	if rec, _ := h.srv.Sandbox(sb.SandboxID); rec.Execs != 7 {
		t.Errorf("record counts %d execs, want 7", rec.Execs)
	}
}

func TestExecWorkdirEnvSecrets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{Secrets: map[string]map[string]string{"db": {"DB_PASSWORD": "hunter2", "SHARED": "from-secret"}}})
	named, err := h.client.Secrets.FromName(h.ctx, "db", &modal.SecretFromNameParams{RequiredKeys: []string{"DB_PASSWORD"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Secrets.FromName(h.ctx, "db", &modal.SecretFromNameParams{RequiredKeys: []string{"MISSING"}}); err == nil {
		t.Error("FromName with a missing required key succeeded")
	}
	local, _ := h.client.Secrets.FromMap(h.ctx, map[string]string{"LOCAL": "yes"}, nil)
	sb := h.create(&modal.SandboxCreateParams{Secrets: []*modal.Secret{named}, Workdir: "/workspace", Env: map[string]string{"SHARED": "from-env"}})
	out, _, _ := h.run(sb, []string{"sh", "-c", `echo "$(pwd) $DB_PASSWORD $SHARED $LOCAL $X"`}, &modal.SandboxExecParams{
		Workdir: "/tmp", Env: map[string]string{"X": "1"}, Secrets: []*modal.Secret{local},
	})
	if out != "/tmp hunter2 from-env yes 1\n" {
		t.Errorf("got %q", out)
	}
	out, _, _ = h.run(sb, []string{"pwd"}, nil)
	if out != "/workspace\n" {
		t.Errorf("default working directory %q, want /workspace", out)
	}
}

func TestExecTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	start := time.Now()
	p, err := sb.Exec(h.ctx, []string{"sleep", "30"}, &modal.SandboxExecParams{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(h.ctx, nil)
	if err != nil || code != 137 {
		t.Fatalf("Wait = %d, %v; want 137 (killed at the timeout)", code, err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the exec ran %v despite its 1s timeout", d)
	}
}

func TestExecStartIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	// The first TaskExecStart runs, then its answer is lost: the SDK
	// retries with the same exec id and the command runs once.
	h.srv.Inject("TaskExecStart", modaltest.Fault{Code: codes.Unavailable, AfterHandler: true, Times: 1})
	out, _, code := h.run(sb, []string{"sh", "-c", "echo run >> /tmp/runs; cat /tmp/runs | wc -l"}, nil)
	if strings.TrimSpace(out) != "1" || code != 0 {
		t.Errorf("the command ran %q times, want 1", strings.TrimSpace(out))
	}
	if n := h.srv.CallCount("TaskExecStart"); n != 2 {
		t.Errorf("TaskExecStart calls = %d, want 2", n)
	}
}

func TestBrokenStreamsResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)

	// Output: the stream breaks after 4 bytes; the SDK reopens at offset 4.
	remove := h.srv.Inject("TaskExecStdioRead", modaltest.Fault{BreakAfterBytes: 4, Times: 1})
	out, _, _ := h.run(sb, []string{"echo", "hello, world"}, &modal.SandboxExecParams{Stderr: modal.Ignore})
	remove()
	if out != "hello, world\n" {
		t.Errorf("output across a broken stream: %q", out)
	}

	// Stdin of a file write: the stream breaks after 256 KiB; the SDK asks
	// TaskExecStdinStatus where to resume.
	data := make([]byte, 640000)
	rand.Read(data)
	h.srv.Inject("TaskExecStdinWriteStream", modaltest.Fault{BreakAfterBytes: 262144, Times: 1})
	if err := sb.Filesystem.WriteBytes(h.ctx, data, "/tmp/big.bin", nil); err != nil {
		t.Fatal(err)
	}
	got, err := sb.Filesystem.ReadBytes(h.ctx, "/tmp/big.bin", nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes (%v), equal=%v", len(got), err, bytes.Equal(got, data))
	}
	if h.srv.CallCount("TaskExecStdinStatus") != 1 || h.srv.CallCount("TaskExecStdinWriteStream") != 2 {
		t.Errorf("TaskExecStdinStatus %d, TaskExecStdinWriteStream %d; want 1 and 2",
			h.srv.CallCount("TaskExecStdinStatus"), h.srv.CallCount("TaskExecStdinWriteStream"))
	}
}

func TestWaitUntilReady(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	probe, err := modal.NewExecProbe([]string{"test", "-f", "/tmp/ready"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb := h.create(&modal.SandboxCreateParams{ReadinessProbe: probe})
	if err := sb.WaitUntilReady(h.ctx, 300*time.Millisecond, nil); err == nil {
		t.Fatal("WaitUntilReady succeeded before the probe could pass")
	}
	h.run(sb, []string{"touch", "/tmp/ready"}, nil)
	if err := sb.WaitUntilReady(h.ctx, 30*time.Second, nil); err != nil {
		t.Fatalf("WaitUntilReady: %v", err)
	}
	plain := h.create(nil)
	if err := plain.WaitUntilReady(h.ctx, time.Second, nil); err != nil {
		t.Errorf("WaitUntilReady without a probe: %v", err)
	}
}

func TestMemoryLimitIsEnforced(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed on this machine: the test allocates memory with it")
	}
	h := newHarness(t, modaltest.Options{})
	sb := h.create(&modal.SandboxCreateParams{MemoryMiB: 128, MemoryLimitMiB: 128})
	alloc := []string{"python3", "-c", "b = bytearray(512 << 20); b[::4096] = b'x' * len(b[::4096]); print('allocated')"}
	if out, _, code := h.run(sb, alloc, nil); code == 0 || strings.Contains(out, "allocated") {
		t.Errorf("512 MiB in a sandbox limited to 128 MiB: exit %d, %q", code, out)
	}
	// Without a limit the same allocation fits (the default cap is 1 GiB).
	free := h.create(nil)
	if out, _, code := h.run(free, alloc, nil); code != 0 || out != "allocated\n" {
		t.Errorf("512 MiB in a sandbox without a limit: exit %d, %q", code, out)
	}
	if rec, _ := h.srv.Sandbox(sb.SandboxID); rec.MemoryMiBMax != 128 {
		t.Errorf("MemoryMiBMax = %d", rec.MemoryMiBMax)
	}
}
