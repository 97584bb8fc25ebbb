package computetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/computesdk-go/compute"
)

// The payload that code round trips must keep byte for byte.
const awkward = "quotes \" ' `backticks` $HOME ${x} $(id) \\ \\\\ \\n %s %% é 日本 😀 \t tab"

// literal returns s as a string literal valid in both Python and
// JavaScript (a JSON string without HTML escaping).
func literal(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func (s *suite) testRunCode(t *testing.T) {
	type codeCase struct {
		name    string
		runtime compute.Runtime // needed by the case; "" = none
		code    string
		opts    *compute.CodeOptions
		check   func(t *testing.T, res *compute.Result, err error)
	}
	// ok checks a run that must succeed with exactly this stdout.
	ok := func(rt compute.Runtime, stdout string) func(*testing.T, *compute.Result, error) {
		return func(t *testing.T, res *compute.Result, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("RunCode: %v", err)
			}
			if res.ExitCode != 0 || res.Stdout != stdout || res.Runtime != rt {
				t.Errorf("RunCode = exit %d, stdout %q, runtime %q, stderr %q\nwant exit 0, stdout %q, runtime %q", res.ExitCode, res.Stdout, res.Runtime, res.Stderr, stdout, rt)
			}
		}
	}
	// syntaxErr checks a run the interpreter must reject before running.
	syntaxErr := func(rt compute.Runtime) func(*testing.T, *compute.Result, error) {
		return func(t *testing.T, res *compute.Result, err error) {
			t.Helper()
			var se *compute.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("RunCode error = %v (result %+v); want a *compute.SyntaxError", err, res)
			}
			if se.Runtime != rt || !strings.Contains(se.Message, "SyntaxError") {
				t.Errorf("SyntaxError{Runtime: %q, Message: %q}; want runtime %q and a message containing %q", se.Runtime, se.Message, rt, "SyntaxError")
			}
			if se.Result == nil || se.Result.ExitCode == 0 {
				t.Errorf("SyntaxError.Result = %+v; want the failed run", se.Result)
			}
		}
	}
	// runtimeErr checks a run that fails while running: a result, no error.
	runtimeErr := func(rt compute.Runtime, stderr ...string) func(*testing.T, *compute.Result, error) {
		return func(t *testing.T, res *compute.Result, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("RunCode error = %v; want nil (an error raised while running is a non-zero exit, not a Go error)", err)
			}
			if res.ExitCode == 0 || res.Runtime != rt {
				t.Errorf("RunCode = exit %d, runtime %q; want a non-zero exit, runtime %q", res.ExitCode, res.Runtime, rt)
			}
			for _, want := range stderr {
				if !strings.Contains(res.Stderr, want) {
					t.Errorf("RunCode stderr = %q; want it to contain %q", res.Stderr, want)
				}
			}
		}
	}
	py, node := compute.Python, compute.Node
	pyOpts, nodeOpts := &compute.CodeOptions{Runtime: py}, &compute.CodeOptions{Runtime: node}
	bigComment := strings.Repeat("x", 200<<10)
	args := []string{"a b", "$x", "-v", ""}

	cases := []codeCase{
		{"PythonHello", py, `print("Hello from Python!")`, pyOpts, ok(py, "Hello from Python!\n")},
		{"PythonImports", py, "import json\nfrom datetime import datetime\nd = {\"message\": \"Hello\", \"timestamp\": datetime(2020, 1, 2).isoformat()}\nprint(json.dumps(d))", pyOpts,
			ok(py, `{"message": "Hello", "timestamp": "2020-01-02T00:00:00"}`+"\n")},
		{"PythonVersion", py, "import sys\nprint(sys.version_info[0])", pyOpts, ok(py, "3\n")},
		{"PythonDetected", py, `print("Hello from Python!")`, nil, ok(py, "Hello from Python!\n")},
		{"PythonSyntaxError", py, "invalid python syntax here!!!", pyOpts, syntaxErr(py)},
		{"PythonIndentationError", py, "if True:\nprint(1)", pyOpts, func(t *testing.T, res *compute.Result, err error) {
			var se *compute.SyntaxError
			if !errors.As(err, &se) || se.Runtime != py {
				t.Errorf("RunCode(bad indentation) error = %v; want a *compute.SyntaxError for python", err)
			}
		}},
		{"PythonRuntimeError", py, `raise Exception("Python test error")`, pyOpts, runtimeErr(py, "Exception", "Python test error", "Traceback")},
		{"PythonRaisedSyntaxError", py, `raise SyntaxError("x")`, pyOpts, runtimeErr(py, "SyntaxError")},
		{"PythonExitCode", py, "import sys\nsys.exit(3)", pyOpts, func(t *testing.T, res *compute.Result, err error) {
			if err != nil || res.ExitCode != 3 {
				t.Errorf("RunCode(sys.exit(3)) = %+v, %v; want exit 3, nil error", res, err)
			}
		}},
		{"PythonExact", py, "import sys\ns = " + literal(awkward) + "\nsys.stdout.buffer.write(s.encode('utf-8'))", pyOpts, ok(py, awkward)},
		{"PythonUnicodePrint", py, `print("é 日本 😀")`, pyOpts, ok(py, "é 日本 😀\n")},
		{"PythonLarge", py, "# " + bigComment + "\nprint('big ok')", pyOpts, ok(py, "big ok\n")},
		{"PythonLargeSyntaxError", py, "# " + bigComment + "\nprint('big ok'", pyOpts, syntaxErr(py)},
		{"PythonStdin", py, "import sys\nprint(sys.stdin.read().upper(), end='')", &compute.CodeOptions{Runtime: py, Stdin: strings.NewReader("hello\nworld\n")}, ok(py, "HELLO\nWORLD\n")},

		{"PythonArgs", py, "import sys\nprint(sys.argv[1:])", &compute.CodeOptions{Runtime: py, Args: args}, ok(py, "['a b', '$x', '-v', '']\n")},
		{"PythonLargeArgs", py, "# " + bigComment + "\nimport sys\nprint(sys.argv[1:])", &compute.CodeOptions{Runtime: py, Args: args}, ok(py, "['a b', '$x', '-v', '']\n")},

		{"NodeHello", node, `console.log("Hello, World!")`, nodeOpts, ok(node, "Hello, World!\n")},
		{"NodeDetected", node, `console.log("Hello, World!")`, nil, ok(node, "Hello, World!\n")},
		{"NodeSyntaxError", node, "invalid syntax here!!!", nodeOpts, syntaxErr(node)},
		{"NodeRuntimeError", node, `throw new Error("Test error")`, nodeOpts, runtimeErr(node, "Error", "Test error")},
		{"NodeThrownSyntaxError", node, `throw new SyntaxError("x")`, nodeOpts, runtimeErr(node, "SyntaxError")},
		{"NodeExitCode", node, "process.exit(3)", nodeOpts, func(t *testing.T, res *compute.Result, err error) {
			if err != nil || res.ExitCode != 3 {
				t.Errorf("RunCode(process.exit(3)) = %+v, %v; want exit 3, nil error", res, err)
			}
		}},
		{"NodeExact", node, "const s = " + literal(awkward) + ";\nprocess.stdout.write(Buffer.from(s, 'utf8'));", nodeOpts, ok(node, awkward)},
		{"NodeLarge", node, "// " + bigComment + "\nconsole.log('big ok')", nodeOpts, ok(node, "big ok\n")},
		{"NodeArgs", node, "console.log(JSON.stringify(process.argv.slice(2)))", &compute.CodeOptions{Runtime: node, Args: args}, ok(node, `["a b","$x","-v",""]`+"\n")},
		{"NodeLargeArgs", node, "// " + bigComment + "\nconsole.log(JSON.stringify(process.argv.slice(2)))", &compute.CodeOptions{Runtime: node, Args: args}, ok(node, `["a b","$x","-v",""]`+"\n")},
		{"NodeStdin", node, "let d = ''; process.stdin.on('data', c => d += c); process.stdin.on('end', () => process.stdout.write(d.toUpperCase()));",
			&compute.CodeOptions{Runtime: node, Stdin: strings.NewReader("hello\nworld\n")}, ok(node, "HELLO\nWORLD\n")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if reason := s.missing(c.runtime); reason != "" {
				t.Skip(reason)
			}
			ctx := testContext(t)
			sb := s.sandbox(t, nil)
			res, err := sb.RunCode(ctx, c.code, c.opts)
			if res == nil && err == nil {
				t.Fatalf("RunCode = nil, nil")
			}
			if res == nil {
				res = &compute.Result{}
			}
			c.check(t, res, err)
		})
	}

	t.Run("SandboxRuntime", func(t *testing.T) {
		t.Parallel()
		if reason := s.missing(node); reason != "" {
			t.Skip(reason)
		}
		ctx := testContext(t)
		// The sandbox's runtime wins over detection: this code reads as
		// Python but is valid JavaScript too.
		sb := s.sandbox(t, &compute.CreateOptions{Runtime: node})
		res, err := sb.RunCode(ctx, "x = 1", nil)
		if err != nil || res.ExitCode != 0 || res.Runtime != node {
			t.Errorf("RunCode(x = 1) in a sandbox created with Runtime node = %+v, %v; want exit 0, runtime node", res, err)
		}
	})

	// Output streams as it is printed, for Python as for Node: the code
	// prints, then waits for a file that the test writes only once it has
	// seen that line. Buffered output would arrive only at exit, and the
	// code would give up waiting.
	for _, c := range []struct {
		rt   compute.Runtime
		code string
	}{
		{py, `import os, time
print("ready")
for _ in range(1200):
    if os.path.exists("ct-release"):
        print("released")
        break
    time.sleep(0.05)
else:
    print("never released")`},
		{node, `const fs = require("fs");
console.log("ready");
let n = 0;
const t = setInterval(() => {
  if (fs.existsSync("ct-release")) { console.log("released"); clearInterval(t); }
  else if (++n > 1200) { console.log("never released"); clearInterval(t); }
}, 50);`},
	} {
		t.Run("Streams_"+string(c.rt), func(t *testing.T) {
			t.Parallel()
			if reason := s.missing(c.rt); reason != "" {
				t.Skip(reason)
			}
			ctx := testContext(t)
			sb := s.sandbox(t, nil)
			seen := make(chan struct{})
			w := &notifyWriter{want: "ready", seen: seen}
			go func() {
				select {
				case <-seen:
					sb.FileSystem().WriteFile(ctx, "ct-release", nil)
				case <-ctx.Done():
				}
			}()
			res, err := sb.RunCode(ctx, c.code, &compute.CodeOptions{Runtime: c.rt, Stdout: w})
			if err != nil {
				t.Fatal(err)
			}
			if res.Stdout != "ready\nreleased\n" {
				t.Errorf("%s output did not stream as printed: %q (want \"ready\" before the code exits)", c.rt, res.Stdout)
			}
		})
	}

	for _, rt := range []compute.Runtime{py, node} {
		if s.missing(rt) == "" {
			continue
		}
		t.Run("Missing_"+string(rt), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			sb := s.sandbox(t, nil)
			_, err := sb.RunCode(ctx, "1", &compute.CodeOptions{Runtime: rt})
			if !errors.Is(err, compute.ErrUnsupported) {
				t.Errorf("RunCode with %s, declared missing: error %v; want one matching compute.ErrUnsupported", rt, err)
			}
		})
	}
}

// missing says why runtime rt is skipped, or "" when the sandboxes have it.
func (s *suite) missing(rt compute.Runtime) string {
	switch {
	case rt == compute.Python && s.cfg.noPython:
		return "skipped: the provider's sandboxes have no python3 (computetest.SkipPython)"
	case rt == compute.Node && s.cfg.noNode:
		return "skipped: the provider's sandboxes have no node (computetest.SkipNode)"
	}
	return ""
}

// notifyWriter closes seen once what was written contains want.
type notifyWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
	done bool
}

func (w *notifyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if !w.done && strings.Contains(w.buf.String(), w.want) {
		w.done = true
		close(w.seen)
	}
	return len(b), nil
}
