package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// command's output and the CLI's own messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// onWrite, when set, is called after every write.
	onWrite func()
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	f := b.onWrite
	b.mu.Unlock()
	if f != nil {
		f()
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type outcome struct {
	code           int
	stdout, stderr string
}

// cli runs the CLI in-process with args and stdin.
func cli(t *testing.T, stdin string, args ...string) outcome {
	t.Helper()
	var stdout, stderr syncBuffer
	code := run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return outcome{code, stdout.String(), stderr.String()}
}

func (o outcome) check(t *testing.T, code int, stdout string) {
	t.Helper()
	if o.code != code || o.stdout != stdout {
		t.Errorf("got exit %d, stdout %q; want exit %d, stdout %q\nstderr:\n%s", o.code, o.stdout, code, stdout, o.stderr)
	}
}

func (o outcome) stderrContains(t *testing.T, want string) {
	t.Helper()
	if !strings.Contains(o.stderr, want) {
		t.Errorf("stderr %q does not contain %q", o.stderr, want)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"python", []string{"run", "-c", `print("hello", 6 * 7)`}, 0, "hello 42\n"},
		{"python runtime flag", []string{"run", "--runtime", "python", "-c", `import sys; print(sys.version_info[0])`}, 0, "3\n"},
		{"node runtime flag", []string{"run", "--runtime", "node", "-c", `console.log(typeof process.version)`}, 0, "string\n"},
		{"node detected", []string{"run", "-c", `const x = [1, 2, 3]; console.log(x.map(v => v * 2).join(","))`}, 0, "2,4,6\n"},
		{"exit code passes through", []string{"run", "-c", "import sys\nprint('bye')\nsys.exit(3)"}, 3, "bye\n"},
		{"node exit code", []string{"run", "--runtime", "node", "-c", `process.exit(5)`}, 5, ""},
		{"runtime error is not a syntax error", []string{"run", "-c", `raise ValueError("boom")`}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, "", tt.args...).check(t, tt.code, tt.stdout)
		})
	}
}

func TestRunStderrIsStreamedSeparately(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "run", "-c", "import sys\nprint('out')\nprint('err', file=sys.stderr)")
	o.check(t, 0, "out\n")
	if o.stderr != "err\n" {
		t.Errorf("stderr = %q, want %q", o.stderr, "err\n")
	}
}

func TestRunFile(t *testing.T) {
	t.Parallel()
	// Each file's content is valid in one runtime only, so a wrong
	// runtime choice fails.
	py := writeFile(t, "prog.py", "import os\nprint(f\"python {os.getcwd() != ''}\")\n")
	js := writeFile(t, "prog.js", "console.log(`node ${1 + 1}`)\n")
	mjs := writeFile(t, "prog.mjs", "console.log('mjs')\n")
	noext := writeFile(t, "prog", "const a = 1; let b = 2; console.log(a + b)\n")
	tests := []struct {
		name   string
		args   []string
		stdout string
	}{
		{".py", []string{"run", py}, "python True\n"},
		{".js", []string{"run", js}, "node 2\n"},
		{".mjs", []string{"run", mjs}, "mjs\n"},
		{"no extension, detected", []string{"run", noext}, "3\n"},
		{"no extension, runtime flag", []string{"run", "--runtime", "node", noext}, "3\n"},
		{"agreeing runtime flag", []string{"run", "--runtime", "python", py}, "python True\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, "", tt.args...).check(t, 0, tt.stdout)
		})
	}
}

func TestRunExampleHello(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"hello.py", "hello.js"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := cli(t, "", "run", filepath.Join("..", "..", "examples", name))
			if o.code != 0 || !strings.HasPrefix(o.stdout, "Hello from ") {
				t.Errorf("got exit %d, stdout %q; want exit 0 and a greeting\nstderr:\n%s", o.code, o.stdout, o.stderr)
			}
		})
	}
}

func TestRunStdin(t *testing.T) {
	t.Parallel()
	t.Run("program from stdin", func(t *testing.T) {
		t.Parallel()
		cli(t, "print(6 * 7)\n", "run", "-").check(t, 0, "42\n")
	})
	t.Run("node program from stdin", func(t *testing.T) {
		t.Parallel()
		cli(t, "console.log(6 * 7)\n", "run", "--runtime", "node", "-").check(t, 0, "42\n")
	})
	t.Run("input forwarded", func(t *testing.T) {
		t.Parallel()
		cli(t, "3\n4\n", "run", "--stdin", "-c", "import sys; print(sum(int(l) for l in sys.stdin))").check(t, 0, "7\n")
	})
	t.Run("no input without --stdin", func(t *testing.T) {
		t.Parallel()
		cli(t, "ignored\n", "run", "-c", "import sys; print(repr(sys.stdin.read()))").check(t, 0, "''\n")
	})
}

func TestRunSyntaxError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"python", []string{"run", "-c", "def f(:\n  pass"}},
		{"node", []string{"run", "--runtime", "node", "-c", "let = ;"}},
		{"python file", []string{"run", writeFile(t, "bad.py", "print('never printed')\nif True\n")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := cli(t, "", tt.args...)
			o.check(t, 1, "")
			o.stderrContains(t, "SyntaxError")
		})
	}
}

func TestRunMissingFile(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "run", filepath.Join(t.TempDir(), "missing.py"))
	o.check(t, exitFailure, "")
	o.stderrContains(t, "compute: open ")
	o.stderrContains(t, "no such file or directory")
}

func TestExec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
	}{
		{"argv, no shell", "", []string{"exec", "--", "echo", "a  b", "$HOME", "*"}, 0, "a  b $HOME *\n"},
		{"flags after the command are its own", "", []string{"exec", "echo", "-n", "hi"}, 0, "hi"},
		{"env and dir", "", []string{"exec", "--env", "GREETING=hi", "-e", "EMPTY=", "--env", "EQ=a=b", "--dir", "/tmp", "--",
			"sh", "-c", `echo "$GREETING:$EMPTY:$EQ:$(pwd)"`}, 0, "hi::a=b:/tmp\n"},
		{"later env wins", "", []string{"exec", "-e", "A=1", "-e", "A=2", "--", "sh", "-c", `echo $A`}, 0, "2\n"},
		{"exit code passes through", "", []string{"exec", "--", "sh", "-c", "echo out; exit 7"}, 7, "out\n"},
		{"stdin forwarded", "hello\n", []string{"exec", "--stdin", "--", "tr", "a-z", "A-Z"}, 0, "HELLO\n"},
		{"no stdin without --stdin", "hello\n", []string{"exec", "--", "cat"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cli(t, tt.stdin, tt.args...).check(t, tt.code, tt.stdout)
		})
	}
}

func TestExecCommandNotFound(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "exec", "--", "no-such-command-xyz", "arg")
	o.check(t, exitNotFound, "")
	o.stderrContains(t, "no-such-command-xyz: command not found")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"exec", []string{"exec", "--timeout", "500ms", "--", "sleep", "30"}, "compute: timed out after 500ms\n"},
		{"run", []string{"run", "--timeout", "1s", "-c", "while True: pass"}, "compute: timed out after 1s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			o := cli(t, "", tt.args...)
			o.check(t, exitTimeout, "")
			o.stderrContains(t, tt.msg)
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v; the command should have been killed after its timeout", d)
			}
		})
	}
}

func TestIsolationNone(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "run", "--isolation", "none", "-c", "print('trusted')")
	o.check(t, 0, "trusted\n")
	o.stderrContains(t, "WARNING: --isolation none")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--nope", "-c", "1"}, "unknown flag: --nope"},
		{"run without program", []string{"run"}, "missing program"},
		{"run with an unknown extension", []string{"run", writeFile(t, "x.rb", "puts 1")}, "give --runtime python or --runtime node"},
		{"--project without FILE", []string{"run", "--project", ".", "-c", "1"}, "--project goes with a FILE"},
		{"bad memory", []string{"exec", "--memory", "lots", "--", "true"}, `--memory "lots"`},
		{"tiny memory", []string{"exec", "--memory", "1m", "--", "true"}, "16 MiB"},
		{"negative cpus", []string{"exec", "--cpus", "-1", "--", "true"}, "--cpus must not be negative"},
		{"negative lifetime", []string{"run", "--lifetime", "-1s", "-c", "1"}, "--lifetime must not be negative"},
		{"sandbox info without id", []string{"sandbox", "info"}, "wants a sandbox id, but got 0 argument(s)"},
		{"unknown runtime", []string{"run", "--runtime", "ruby", "-c", "1"}, `unknown --runtime "ruby"`},
		{"runtime contradicts extension", []string{"run", "--runtime", "node", writeFile(t, "x.py", "print(1)")}, "contradicts"},
		{"--stdin with program on stdin", []string{"run", "--stdin", "-"}, "--stdin"},
		{"bad timeout", []string{"run", "--timeout", "soon", "-c", "1"}, `invalid argument "soon"`},
		{"negative timeout", []string{"exec", "--timeout", "-1s", "--", "true"}, "must not be negative"},
		{"exec without command", []string{"exec"}, "missing command"},
		{"exec with only --", []string{"exec", "--"}, "missing command"},
		{"bad env", []string{"exec", "--env", "NOVALUE", "--", "true"}, `--env "NOVALUE"`},
		{"empty env name", []string{"exec", "--env", "=x", "--", "true"}, `--env "=x"`},
		{"unknown isolation", []string{"exec", "--isolation", "vm", "--", "true"}, `unknown --isolation "vm"`},
		{"unknown provider", []string{"exec", "--provider", "e2b", "--", "true"}, `unknown provider "e2b" (available: local, modal)`},
		{"version with args", []string{"version", "now"}, `takes no arguments, but got "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := cli(t, "", tt.args...)
			o.check(t, exitUsage, "")
			if !strings.HasPrefix(o.stderr, "compute: ") {
				t.Errorf("stderr %q does not start with %q", o.stderr, "compute: ")
			}
			o.stderrContains(t, tt.msg)
			o.stderrContains(t, "--help' for usage.")
			if strings.Contains(o.stderr, "goroutine ") || strings.Contains(o.stderr, "panic") {
				t.Errorf("stderr looks like a crash:\n%s", o.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"exec", "--help"}, {"version", "--help"}, {"help", "run"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			o := cli(t, "", args...)
			if o.code != 0 || !strings.Contains(o.stdout, "Examples:") || !strings.Contains(o.stdout, "compute ") {
				t.Errorf("got exit %d, stdout:\n%s\nwant exit 0 and help with examples", o.code, o.stdout)
			}
			if o.stderr != "" {
				t.Errorf("stderr = %q, want nothing", o.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "version")
	if o.code != 0 || !strings.HasPrefix(o.stdout, "compute ") || !strings.Contains(o.stdout, "go1.") {
		t.Errorf("got exit %d, stdout %q; want exit 0 and %q", o.code, o.stdout, "compute VERSION goX.Y OS/ARCH")
	}
}

// recorder wraps the local provider and records which sandboxes were
// created and destroyed, and whether the provider was closed.
type recorder struct {
	provider
	mu        sync.Mutex
	created   []string
	destroyed []string
	closed    bool
}

func (r *recorder) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	ps, err := r.provider.Create(ctx, opts)
	if err == nil {
		r.mu.Lock()
		r.created = append(r.created, ps.ID())
		r.mu.Unlock()
	}
	return ps, err
}

func (r *recorder) Destroy(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err // the CLI must destroy with a live context
	}
	r.mu.Lock()
	r.destroyed = append(r.destroyed, id)
	r.mu.Unlock()
	return r.provider.Destroy(ctx, id)
}

func (r *recorder) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.provider.Close()
}

// recordingApp returns an app whose local provider is recorded.
func recordingApp(stdout, stderr *syncBuffer) (*app, *recorder) {
	rec := &recorder{}
	a := &app{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, providers: map[string]providerFactory{
		"local": func(o providerOptions) (provider, error) {
			p, err := newLocal(o)
			if err != nil {
				return nil, err
			}
			rec.provider = p
			return rec, nil
		},
	}}
	return a, rec
}

func (r *recorder) checkCleanedUp(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.created) != 1 || len(r.destroyed) != 1 || r.created[0] != r.destroyed[0] || !r.closed {
		t.Errorf("created %q, destroyed %q, closed %v; want one sandbox created and destroyed, and the provider closed", r.created, r.destroyed, r.closed)
	}
}

func TestSandboxDestroyed(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "-c", "print(1)"},
		{"run", "-c", "import sys; sys.exit(4)"},
		{"exec", "--", "no-such-command-xyz"},
		{"exec", "--timeout", "200ms", "--", "sleep", "30"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr syncBuffer
			a, rec := recordingApp(&stdout, &stderr)
			a.main(t.Context(), args)
			rec.checkCleanedUp(t)
		})
	}
}

func TestInterrupt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	// Cancel (as Ctrl-C does) once the command has started printing: this
	// also shows that output is streamed while the command runs.
	stdout.onWrite = cancel
	a, rec := recordingApp(&stdout, &stderr)
	start := time.Now()
	code := a.main(ctx, []string{"exec", "--", "sh", "-c", "echo started; exec sleep 60"})
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v; the command should have been killed on cancellation", d)
	}
	if code != exitInterrupted || stdout.String() != "started\n" {
		t.Errorf("got exit %d, stdout %q; want exit %d, stdout %q\nstderr:\n%s", code, stdout.String(), exitInterrupted, "started\n", stderr.String())
	}
	if !strings.Contains(stderr.String(), "compute: interrupted") {
		t.Errorf("stderr %q does not say it was interrupted", stderr.String())
	}
	rec.checkCleanedUp(t)
}

// compute run FILE ARGS behaves like python3 FILE ARGS: the file runs by
// name in the sandbox, with its arguments, beside its project's modules.
func TestRunFileAsItsInterpreterWould(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "helper.py"), []byte("X = 42\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "lib", "util.js"), []byte("module.exports = {y: 7};\n"), 0o644)
	main := filepath.Join(dir, "main.py")
	os.WriteFile(main, []byte("import os, sys, helper\nprint(os.path.basename(__file__), sys.argv[1:], helper.X)\nraise SystemExit(3)\n"), 0o644)
	js := filepath.Join(dir, "main.js")
	os.WriteFile(js, []byte("console.log(require('./lib/util').y, process.argv.slice(2).join(','))\n"), 0o644)

	cli(t, "", "run", main, "a", "--flag").check(t, 3, "main.py ['a', '--flag'] 42\n")
	cli(t, "", "run", js, "x", "-y").check(t, 0, "7 x,-y\n")
	// A traceback names the file, not <string>.
	bad := filepath.Join(dir, "bad.py")
	os.WriteFile(bad, []byte("def f():\n    raise ValueError('boom')\nf()\n"), 0o644)
	o := cli(t, "", "run", bad)
	o.check(t, 1, "")
	o.stderrContains(t, `bad.py", line 2, in f`)
	// Only the file: its sibling is not there.
	o = cli(t, "", "run", "--project", "none", main)
	o.check(t, 1, "")
	o.stderrContains(t, "No module named 'helper'")
	// A file of another language runs with --runtime.
	other := filepath.Join(dir, "script.txt")
	os.WriteFile(other, []byte("print('as python')\n"), 0o644)
	cli(t, "", "run", "--runtime", "python", other).check(t, 0, "as python\n")
}

// Limits from the command line, and what the CLI says when one is hit.
func TestRunLimits(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "run", "--memory", "64m", "-c", "b = bytearray(300 << 20)")
	o.check(t, 137, "")
	o.stderrContains(t, "--memory")
	o = cli(t, "", "run", "--lifetime", "2s", "-c", "import time; time.sleep(60)")
	o.check(t, 124, "")
	o.stderrContains(t, "lifetime")
	o.stderrContains(t, "--lifetime")
	o = cli(t, "", "exec", "--memory", "1g", "--cpus", "0.5", "--", "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo ok")
	if o.code != 0 {
		t.Errorf("exec with --memory and --cpus: exit %d, stderr %q", o.code, o.stderr)
	}
}

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{"512m": 512 << 20, "2g": 2 << 30, "1.5g": 3 << 29, "256": 256 << 20, "64MiB": 64 << 20, "100000k": 100000 << 10} {
		if got, err := parseMemory(in); err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1g", "0", "1m", "g"} {
		if n, err := parseMemory(in); err == nil {
			t.Errorf("parseMemory(%q) = %d; want an error", in, n)
		}
	}
}
