package computetest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
)

// RichPython declares that the provider's sandboxes have IPython,
// matplotlib and pandas for python3: the code-context cases then require
// rich display (Info().Rich, charts as PNG, DataFrames as HTML) instead of
// skipping those checks.
func RichPython() Option { return func(c *config) { c.richPython = true } }

// RichPythonLikeHost is RichPython for providers whose sandboxes run the
// host's /usr/bin/python3 (local, and the Modal emulator): rich display is
// required when the host's python3 imports IPython, matplotlib and pandas,
// and its cases are skipped, saying so, when it does not.
func RichPythonLikeHost() Option {
	return func(c *config) {
		err := exec.Command("/usr/bin/python3", "-c", "import IPython, matplotlib, pandas").Run()
		c.richPython = err == nil
	}
}

// newContext starts a code context in sb, closed when t ends.
func newContext(t *testing.T, ctx context.Context, sb *compute.Sandbox, opts *compute.CodeContextOptions) *compute.CodeContext {
	t.Helper()
	cc, err := sb.NewCodeContext(ctx, opts)
	if err != nil {
		t.Fatalf("NewCodeContext(%+v): %v", opts, err)
	}
	if cc.ID() == "" {
		t.Fatal("CodeContext.ID() is empty")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), destroyTimeout)
		defer cancel()
		if err := cc.Close(ctx); err != nil {
			t.Errorf("CodeContext.Close: %v", err)
		}
	})
	return cc
}

// cell runs code and fails the test on a Go error or an exception.
func cell(t *testing.T, ctx context.Context, cc *compute.CodeContext, code string, opts *compute.CellOptions) *compute.Execution {
	t.Helper()
	ex, err := cc.Run(ctx, code, opts)
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	if ex.Error != nil {
		t.Fatalf("Run(%q) raised %s\n%s", code, ex.Error.String(), ex.Error.Traceback)
	}
	return ex
}

// mainText returns the text of the cell's last-expression value.
func mainText(ex *compute.Execution) string {
	if m := ex.Main(); m != nil {
		return m.Text
	}
	return ""
}

func (s *suite) testCodeContext(t *testing.T) {
	py, node := compute.Python, compute.Node
	cases := []struct {
		name    string
		runtime compute.Runtime
		f       func(t *testing.T, ctx context.Context, sb *compute.Sandbox)
	}{
		{"PythonState", py, s.ctxPythonState},
		{"PythonErrors", py, s.ctxPythonErrors},
		{"PythonStreaming", py, s.ctxStreaming(py, "import os, time\nprint('first', flush=True)\nwhile not os.path.exists(%q): time.sleep(0.01)\nprint('second')")},
		{"PythonTimeoutKeepsState", py, s.ctxTimeout(py, "kept = 5", "import time\ntime.sleep(60)", "kept", "5")},
		{"PythonCancelKeepsState", py, s.ctxCancel(py, "kept = 6", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "kept", "6")},
		{"PythonDiedAndRestart", py, s.ctxDied(py, "import os\nos._exit(3)", "lost = 1", "lost")},
		{"PythonFraming", py, s.ctxPythonFraming},
		{"PythonOptions", py, s.ctxPythonOptions},
		{"PythonOutputCap", py, s.ctxOutputCap(py, "print('x' * 5000)")},
		{"PythonRich", py, s.ctxPythonRich},
		{"IsolatedContexts", py, s.ctxIsolation},
		{"ListAndClose", py, s.ctxListClose},
		{"Invalid", "", s.ctxInvalid},
		{"NodeState", node, s.ctxNodeState},
		{"NodeErrors", node, s.ctxNodeErrors},
		{"NodeStreaming", node, s.ctxStreaming(node, "const fs = require('fs');\nconsole.log('first');\nwhile (!fs.existsSync(%q)) await new Promise(r => setTimeout(r, 10));\nconsole.log('second')")},
		{"NodeTimeoutKeepsState", node, s.ctxTimeout(node, "let kept = 5", "while (true) {}", "kept", "5")},
		{"NodeDiedAndRestart", node, s.ctxDied(node, "process.exit(3)", "var lost = 1", "lost")},
		{"NodeOutputCap", node, s.ctxOutputCap(node, "console.log('x'.repeat(5000))")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if why := s.missing(c.runtime); why != "" {
				t.Skip(why)
			}
			ctx := testContext(t)
			c.f(t, ctx, s.sandbox(t, nil))
		})
	}
}

func (s *suite) ctxPythonState(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Python})
	info := cc.Info()
	if info.ID != cc.ID() || info.Runtime != compute.Python || !strings.HasPrefix(info.Version, "3.") || info.CreatedAt.IsZero() {
		t.Errorf("Info() = %+v; want the id, runtime python, a 3.x version and a creation time", info)
	}
	cell(t, ctx, cc, "x = 41\ndef inc(v):\n    return v + 1", nil)
	ex := cell(t, ctx, cc, "print('hello')\ninc(x)", nil)
	if ex.Stdout != "hello\n" || mainText(ex) != "42" {
		t.Errorf("cell = stdout %q, main %q (results %+v); want %q and %q", ex.Stdout, mainText(ex), ex.Results, "hello\n", "42")
	}
	if ex := cell(t, ctx, cc, "y = 1", nil); ex.Main() != nil {
		t.Errorf("an assignment gave a main result %+v; want none", ex.Main())
	}
	ex = cell(t, ctx, cc, "import sys\nsys.stderr.write('warn\\n')\nsys.stdout.buffer.write(b'\\xff\\x00\\xfe'); sys.stdout.flush()", nil)
	if ex.Stderr != "warn\n" || ex.Stdout != "\xff\x00\xfe" {
		t.Errorf("cell = stdout %q, stderr %q; want the raw bytes %q and %q", ex.Stdout, ex.Stderr, "\xff\x00\xfe", "warn\n")
	}
}

func (s *suite) ctxPythonErrors(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Python})
	ex, err := cc.Run(ctx, "before = 1\nprint('partial')\n1 / 0", nil)
	if err != nil {
		t.Fatalf("Run of a raising cell: %v; want a nil error and Execution.Error", err)
	}
	if ex.Error == nil || ex.Error.Name != "ZeroDivisionError" || !strings.Contains(ex.Error.Value, "division") || !strings.Contains(ex.Error.Traceback, "ZeroDivisionError") {
		t.Errorf("Error = %+v; want ZeroDivisionError with its message and traceback", ex.Error)
	}
	if ex.Stdout != "partial\n" {
		t.Errorf("Stdout = %q; want what was printed before the exception", ex.Stdout)
	}
	ex, err = cc.Run(ctx, "def (:", nil)
	if err != nil || ex.Error == nil || ex.Error.Name != "SyntaxError" {
		t.Errorf("syntax error: %+v, %v; want Execution.Error named SyntaxError", ex, err)
	}
	if ex := cell(t, ctx, cc, "before + 1", nil); mainText(ex) != "2" {
		t.Errorf("after the errors: main %q; want 2 (state kept)", mainText(ex))
	}
}

// ctxStreaming checks that output reaches the writer while the cell runs:
// the cell prints, then waits for a file that the test creates only once
// the writer has seen what was printed.
func (s *suite) ctxStreaming(rt compute.Runtime, code string) func(*testing.T, context.Context, *compute.Sandbox) {
	return func(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
		cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: rt})
		flag := scratch(t, sb) + "/go"
		w := &notifyWriter{want: "first", seen: make(chan struct{})}
		type out struct {
			ex  *compute.Execution
			err error
		}
		done := make(chan out, 1)
		go func() {
			ex, err := cc.Run(ctx, strings.Replace(code, "%q", quote(flag), 1), &compute.CellOptions{Stdout: w, Timeout: killBound})
			done <- out{ex, err}
		}()
		select {
		case <-w.seen:
		case o := <-done:
			t.Fatalf("the cell ended (%+v, %v) before the test let it; want it waiting", o.ex, o.err)
		case <-ctx.Done():
			t.Fatal("the cell's first line never reached CellOptions.Stdout while it ran: output is not streamed")
		}
		if err := sb.FileSystem().WriteFile(ctx, flag, nil); err != nil {
			t.Fatalf("WriteFile(%s): %v", flag, err)
		}
		o := <-done
		if o.err != nil || o.ex.Stdout != "first\nsecond\n" {
			t.Fatalf("Run = %+v, %v; want stdout %q", o.ex, o.err, "first\nsecond\n")
		}
		w.mu.Lock()
		got := w.buf.String()
		w.mu.Unlock()
		if got != "first\nsecond\n" {
			t.Errorf("the writer got %q; want %q", got, "first\nsecond\n")
		}
	}
}

func (s *suite) ctxTimeout(rt compute.Runtime, setup, hang, check, want string) func(*testing.T, context.Context, *compute.Sandbox) {
	return func(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
		cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: rt})
		cell(t, ctx, cc, setup, nil)
		start := time.Now()
		_, err := cc.Run(ctx, hang, &compute.CellOptions{Timeout: time.Second})
		if !errors.Is(err, compute.ErrTimeout) {
			t.Fatalf("Run past its timeout: %v; want an error matching compute.ErrTimeout", err)
		}
		if d := time.Since(start); d > killBound {
			t.Errorf("the timed-out cell returned after %v; want it interrupted well before %v", d, killBound)
		}
		if ex := cell(t, ctx, cc, check, nil); mainText(ex) != want {
			t.Errorf("after the timeout %q = %q; want %q (the context keeps its state)", check, mainText(ex), want)
		}
	}
}

func (s *suite) ctxCancel(rt compute.Runtime, setup, hang, check, want string) func(*testing.T, context.Context, *compute.Sandbox) {
	return func(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
		cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: rt})
		cell(t, ctx, cc, setup, nil)
		cellCtx, cancel := context.WithCancel(ctx)
		w := &notifyWriter{want: "sleeping", seen: make(chan struct{})}
		go func() {
			select {
			case <-w.seen:
			case <-ctx.Done():
			}
			cancel()
		}()
		ex, err := cc.Run(cellCtx, hang, &compute.CellOptions{Stdout: w})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run with its context canceled: %v; want context.Canceled", err)
		}
		if ex == nil || !strings.Contains(ex.Stdout, "sleeping") {
			t.Errorf("partial Execution = %+v; want what was printed before the interrupt", ex)
		}
		if ex := cell(t, ctx, cc, check, nil); mainText(ex) != want {
			t.Errorf("after the cancel %q = %q; want %q (the context keeps its state)", check, mainText(ex), want)
		}
	}
}

func (s *suite) ctxDied(rt compute.Runtime, exit, setup, gone string) func(*testing.T, context.Context, *compute.Sandbox) {
	return func(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
		cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: rt})
		cell(t, ctx, cc, setup, nil)
		if _, err := cc.Run(ctx, exit, nil); !errors.Is(err, compute.ErrContextDied) {
			t.Fatalf("Run of a cell that exits the interpreter: %v; want an error matching compute.ErrContextDied", err)
		}
		if _, err := cc.Run(ctx, "1", nil); !errors.Is(err, compute.ErrContextDied) {
			t.Fatalf("Run after the interpreter died: %v; want compute.ErrContextDied again", err)
		}
		if err := cc.Restart(ctx); err != nil {
			t.Fatalf("Restart: %v", err)
		}
		if ex := cell(t, ctx, cc, "1 + 1", nil); mainText(ex) != "2" {
			t.Errorf("after Restart 1 + 1 = %q; want 2", mainText(ex))
		}
		ex, err := cc.Run(ctx, gone, nil)
		if err != nil || ex.Error == nil {
			t.Errorf("after Restart %q = %+v, %v; want an exception (the old state is gone)", gone, ex, err)
		}
		if len(mustList(t, ctx, sb)) != 1 {
			t.Errorf("CodeContexts after Restart: want the one context, same id")
		}
	}
}

func (s *suite) ctxPythonFraming(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Python})
	forged := `{"type":"result","id":1,"main":true,"data":{"text/plain":"forged"}}` + "\n" + `{"type":"end","id":1}` + "\n"
	code := "import os, sys\nline = " + quote(forged) + "\nprint(line, end='')\nos.write(1, line.encode())\nos.write(2, line.encode())\nsys.stdout.flush()\nos.close(1)\nos.close(0)\n'real'"
	ex, err := cc.Run(ctx, code, nil)
	if err != nil {
		t.Fatalf("Run of a cell that writes protocol lines and closes its fds: %v", err)
	}
	for _, r := range ex.Results {
		if strings.Contains(r.Text, "forged") {
			t.Errorf("a line the cell printed became a result: %+v", r)
		}
	}
	if mainText(ex) != "'real'" {
		t.Errorf("main = %q; want 'real'", mainText(ex))
	}
	if strings.Count(ex.Stdout, "forged") != 2 || !strings.Contains(ex.Stderr, "forged") {
		t.Errorf("stdout %q, stderr %q; want the printed lines as plain output", ex.Stdout, ex.Stderr)
	}
	if ex := cell(t, ctx, cc, "print('still here')", nil); ex.Stdout != "still here\n" {
		t.Errorf("the next cell printed %q; want %q (the cell's closed fds are its own)", ex.Stdout, "still here\n")
	}
}

func (s *suite) ctxPythonOptions(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	dir := scratch(t, sb) + "/ctxdir"
	if err := sb.FileSystem().MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Python, Dir: dir, Env: map[string]string{"CTX_VAR": "v 1"}})
	ex := cell(t, ctx, cc, "import os\nprint(os.getcwd())\nprint(os.environ['CTX_VAR'])", nil)
	if ex.Stdout != dir+"\nv 1\n" {
		t.Errorf("cwd and env printed %q; want %q", ex.Stdout, dir+"\nv 1\n")
	}
	if cc.Info().Dir != dir {
		t.Errorf("Info().Dir = %q; want %q", cc.Info().Dir, dir)
	}
}

func (s *suite) ctxOutputCap(rt compute.Runtime, code string) func(*testing.T, context.Context, *compute.Sandbox) {
	return func(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
		cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: rt})
		var all bytes.Buffer
		ex := cell(t, ctx, cc, code, &compute.CellOptions{MaxOutput: 1000, Stdout: &all})
		if len(ex.Stdout) > 1000 || !ex.Truncated {
			t.Errorf("Execution kept %d bytes, Truncated %v; want at most 1000 and Truncated", len(ex.Stdout), ex.Truncated)
		}
		if all.Len() != 5001 {
			t.Errorf("the writer got %d bytes; want all 5001", all.Len())
		}
	}
}

func (s *suite) ctxPythonRich(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	if !s.cfg.richPython {
		t.Skip("skipped: the provider's python3 is not declared to have IPython, matplotlib and pandas (computetest.RichPython; on this machine: apt install python3-ipython python3-matplotlib python3-pandas)")
	}
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Python})
	if !cc.Info().Rich {
		t.Fatal("Info().Rich = false; want IPython's rich display (computetest.RichPython)")
	}
	var seen []compute.Output
	ex := cell(t, ctx, cc, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\nfrom IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))\n%time z = 1", &compute.CellOptions{OnResult: func(o compute.Output) { seen = append(seen, o) }})
	if len(ex.Results) != 2 || !bytes.HasPrefix(ex.Results[0].PNG, []byte("\x89PNG")) || ex.Results[1].HTML != "<b>bold</b>" {
		t.Fatalf("results = %d %s; want a PNG chart then the HTML", len(ex.Results), summarize(ex.Results))
	}
	if len(seen) != 2 {
		t.Errorf("OnResult saw %d outputs; want 2", len(seen))
	}
	ex = cell(t, ctx, cc, "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})", nil)
	m := ex.Main()
	if m == nil || !strings.Contains(m.HTML, "<table") || !strings.Contains(m.Text, "a  b") {
		t.Errorf("a DataFrame gave %s; want HTML with a <table> and the text form", summarize(ex.Results))
	}
	ex = cell(t, ctx, cc, "!echo from-shell", nil)
	if !strings.Contains(ex.Stdout, "from-shell") {
		t.Errorf("!echo printed %q; want from-shell", ex.Stdout)
	}
}

func summarize(rs []compute.Output) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("{")
		if r.Text != "" {
			b.WriteString("text:" + trunc(r.Text) + " ")
		}
		if r.HTML != "" {
			b.WriteString("html:" + trunc(r.HTML) + " ")
		}
		if len(r.PNG) > 0 {
			b.WriteString("png ")
		}
		b.WriteString("}")
	}
	return b.String()
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func (s *suite) ctxIsolation(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	a := newContext(t, ctx, sb, nil)
	b := newContext(t, ctx, sb, nil)
	if a.ID() == b.ID() {
		t.Fatalf("two contexts share the id %q", a.ID())
	}
	dir := scratch(t, sb)
	if err := sb.FileSystem().MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	path := dir + "/shared"
	cell(t, ctx, a, "secret = 1\nopen("+quote(path)+", 'w').write('from a')", nil)
	ex, err := b.Run(ctx, "secret", nil)
	if err != nil || ex.Error == nil || ex.Error.Name != "NameError" {
		t.Errorf("the other context's variable: %+v, %v; want a NameError", ex, err)
	}
	if ex := cell(t, ctx, b, "open("+quote(path)+").read()", nil); mainText(ex) != "'from a'" {
		t.Errorf("the other context read %q; want 'from a' (one filesystem)", mainText(ex))
	}
}

func mustList(t *testing.T, ctx context.Context, sb *compute.Sandbox) []string {
	t.Helper()
	list, err := sb.CodeContexts(ctx)
	if err != nil {
		t.Fatalf("CodeContexts: %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID())
	}
	return ids
}

func (s *suite) ctxListClose(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	if ids := mustList(t, ctx, sb); len(ids) != 0 {
		t.Errorf("a new sandbox has contexts %v; want none", ids)
	}
	a := newContext(t, ctx, sb, nil)
	b := newContext(t, ctx, sb, nil)
	if ids := mustList(t, ctx, sb); len(ids) != 2 || ids[0] != a.ID() || ids[1] != b.ID() {
		t.Errorf("CodeContexts = %v; want [%s %s], oldest first", ids, a.ID(), b.ID())
	}
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Errorf("a second Close: %v; want nil", err)
	}
	if ids := mustList(t, ctx, sb); len(ids) != 1 || ids[0] != b.ID() {
		t.Errorf("CodeContexts after Close = %v; want [%s]", ids, b.ID())
	}
	if _, err := a.Run(ctx, "1", nil); err == nil {
		t.Error("Run on a closed context succeeded; want an error")
	}
}

func (s *suite) ctxInvalid(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	if _, err := sb.NewCodeContext(ctx, &compute.CodeContextOptions{Runtime: "ruby"}); !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("NewCodeContext(ruby): %v; want compute.ErrInvalid", err)
	}
	if _, err := sb.NewCodeContext(ctx, &compute.CodeContextOptions{Env: map[string]string{"A=B": "x"}}); !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("NewCodeContext(bad env): %v; want compute.ErrInvalid", err)
	}
	if s.missing(compute.Python) != "" {
		return
	}
	cc := newContext(t, ctx, sb, nil)
	if _, err := cc.Run(ctx, "1", &compute.CellOptions{Timeout: -time.Second}); !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("Run with a negative timeout: %v; want compute.ErrInvalid", err)
	}
	if _, err := cc.Run(ctx, "1\x00", nil); !errors.Is(err, compute.ErrInvalid) {
		t.Errorf("Run of code with NUL: %v; want compute.ErrInvalid", err)
	}
}

func (s *suite) ctxNodeState(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Node})
	if info := cc.Info(); info.Runtime != compute.Node || info.Version == "" || info.Rich {
		t.Errorf("Info() = %+v; want runtime node, a version, not Rich", info)
	}
	cell(t, ctx, cc, "let a = 1; const b = 2; function add(x, y) { return x + y }", nil)
	ex := cell(t, ctx, cc, "console.log('hi'); add(a, b)", nil)
	if ex.Stdout != "hi\n" || mainText(ex) != "3" {
		t.Errorf("cell = stdout %q, main %q; want %q and 3", ex.Stdout, mainText(ex), "hi\n")
	}
	ex = cell(t, ctx, cc, "await new Promise(r => setTimeout(() => r(7), 10))", nil)
	if mainText(ex) != "7" {
		t.Errorf("top-level await gave %q; want 7", mainText(ex))
	}
	ex = cell(t, ctx, cc, "({k: 'v'})", nil)
	if mainText(ex) != "{ k: 'v' }" {
		t.Errorf("an object gave %q; want util.inspect's %q", mainText(ex), "{ k: 'v' }")
	}
}

func (s *suite) ctxNodeErrors(t *testing.T, ctx context.Context, sb *compute.Sandbox) {
	cc := newContext(t, ctx, sb, &compute.CodeContextOptions{Runtime: compute.Node})
	ex, err := cc.Run(ctx, "let kept = 1; null.x", nil)
	if err != nil || ex.Error == nil || ex.Error.Name != "TypeError" || ex.Error.Traceback == "" {
		t.Errorf("null.x = %+v, %v; want Execution.Error TypeError with a stack", ex, err)
	}
	ex, err = cc.Run(ctx, "let (", nil)
	if err != nil || ex.Error == nil || ex.Error.Name != "SyntaxError" {
		t.Errorf("a syntax error = %+v, %v; want Execution.Error SyntaxError", ex, err)
	}
	if ex := cell(t, ctx, cc, "kept + 1", nil); mainText(ex) != "2" {
		t.Errorf("after errors kept + 1 = %q; want 2", mainText(ex))
	}
}

// quote returns s as a string literal that Python and JavaScript both read.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
