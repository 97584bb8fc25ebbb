package interpreter

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func startPython(t testing.TB, flags ...string) *proc {
	t.Helper()
	if len(flags) == 0 {
		needPython(t, "IPython")
	} else {
		needPython(t)
	}
	return startProc(t, hostArgv(t, "python", flags...))
}

// pythonModes runs f against IPython and the standard-library fallback
// (python -S cannot import the system's IPython).
func pythonModes(t *testing.T, f func(t *testing.T, p *proc)) {
	t.Run("ipython", func(t *testing.T) {
		t.Parallel()
		f(t, startPython(t))
	})
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		p := startPython(t, "-S")
		if p.ready.Rich {
			t.Fatal("python -S reports IPython")
		}
		f(t, p)
	})
}

func TestPythonReady(t *testing.T) {
	p := startPython(t)
	r := p.ready
	if r.Runtime != "python" || !strings.HasPrefix(r.Version, "3.") || !r.Rich || r.PID <= 0 {
		t.Errorf("ready = %+v", r)
	}
}

func TestPythonState(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		if ex := p.run(t, "x = 41\ndef f(a):\n    return a + 1"); len(ex.Results) != 0 || ex.Error != nil {
			t.Errorf("assignment cell gave %+v", ex)
		}
		if v := p.value(t, "f(x)"); v != "42" {
			t.Errorf("f(x) = %q", v)
		}
		// Only the last expression is the main result.
		ex := p.run(t, "y = 'a'\nx\ny * 3")
		if len(ex.Results) != 1 || !ex.Results[0].IsMain || ex.Results[0].Text != "'aaa'" {
			t.Errorf("results %+v", ex.Results)
		}
		// No main result for None or an assignment.
		if ex := p.run(t, "None"); len(ex.Results) != 0 {
			t.Errorf("None gave %+v", ex.Results)
		}
		if v := p.value(t, "import asyncio\nawait asyncio.sleep(0)\n'awaited'"); v != "'awaited'" {
			t.Errorf("top-level await gave %q", v)
		}
	})
}

func TestPythonErrors(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		ex := p.run(t, "def g():\n    return 1 / 0\nprint('before')\ng()")
		if ex.Error == nil || ex.Error.Name != "ZeroDivisionError" || ex.Error.Value != "division by zero" ||
			!strings.Contains(ex.Error.Traceback, "ZeroDivisionError") || !strings.Contains(ex.Error.Traceback, "return 1 / 0") {
			t.Errorf("error = %+v", ex.Error)
		}
		if ex.Stdout != "before\n" {
			t.Errorf("stdout %q", ex.Stdout)
		}
		ex = p.run(t, "def f(:\n  pass")
		if ex.Error == nil || ex.Error.Name != "SyntaxError" {
			t.Errorf("syntax error = %+v", ex.Error)
		}
		ex = p.run(t, "raise KeyError('k')")
		if ex.Error == nil || ex.Error.Name != "KeyError" {
			t.Errorf("error = %+v", ex.Error)
		}
		// sys.exit is an error of the cell, not the end of the context.
		ex = p.run(t, "import sys; sys.exit(3)")
		if ex.Error == nil || ex.Error.Name != "SystemExit" {
			t.Errorf("sys.exit gave %+v", ex.Error)
		}
		if v := p.value(t, "1 + 1"); v != "2" {
			t.Errorf("after errors: %q", v)
		}
	})
}

// Output printed before a display output reaches the caller before it,
// and both reach it while the cell runs.
func TestPythonOrder(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		var mu sync.Mutex
		var log []string
		rec := func(s string) {
			mu.Lock()
			log = append(log, s)
			mu.Unlock()
		}
		opts := &RunOptions{
			Stdout:   writerFunc(func(b []byte) { rec("out:" + string(b)) }),
			Stderr:   writerFunc(func(b []byte) { rec("err:" + string(b)) }),
			OnResult: func(o Output) { rec("result:" + o.Text) },
		}
		// One write per line: print would write the newline separately.
		code := "import sys\nsys.stdout.write('a\\n')\nsys.stderr.write('e\\n')\ndisplay(41)\nsys.stdout.write('b\\n')\n42"
		ex, err := p.s.Run(ctxT(t, 60*time.Second), code, opts)
		if err != nil {
			t.Fatal(err)
		}
		// stdout and stderr are two pipes: their relative order is not
		// kept, but each comes before a result displayed after it.
		want := []string{"out:a\n", "err:e\n", "result:41", "out:b\n", "result:42"}
		if len(log) == 5 && log[0] == want[1] && log[1] == want[0] {
			log[0], log[1] = log[1], log[0]
		}
		if strings.Join(log, "|") != strings.Join(want, "|") {
			t.Errorf("events %q, want %q", log, want)
		}
		if len(ex.Results) != 2 || ex.Results[0].IsMain || !ex.Results[1].IsMain {
			t.Errorf("results %+v", ex.Results)
		}
	})
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(append([]byte(nil), p...))
	return len(p), nil
}

// A chunk and a display output reach the caller while the cell still runs.
func TestPythonStreaming(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		dir := t.TempDir()
		gate := filepath.Join(dir, "gate")
		w := newSignalWriter()
		results := make(chan Output, 4)
		done := make(chan error, 1)
		var ex *Execution
		go func() {
			var err error
			ex, err = p.s.Run(ctxT(t, 120*time.Second),
				"import os, time\nprint('first')\ndisplay('shown')\nwhile not os.path.exists("+pyStr(gate)+"):\n    time.sleep(0.01)\nprint('last')",
				&RunOptions{Stdout: w, OnResult: func(o Output) { results <- o }})
			done <- err
		}()
		select {
		case <-w.first:
		case err := <-done:
			t.Fatalf("the cell ended (%v) before its first output arrived", err)
		}
		select {
		case o := <-results:
			if o.Text != "'shown'" {
				t.Errorf("result %+v", o)
			}
		case err := <-done:
			t.Fatalf("the cell ended (%v) before its display output arrived", err)
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ex.Stdout != "first\nlast\n" {
			t.Errorf("stdout %q", ex.Stdout)
		}
	})
}

func pyStr(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

// User code that prints anything, closes or dups the standard fds, or
// writes fake protocol frames cannot break the framing.
func TestPythonFraming(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		fake := `{"type":"end","id":1}\n{"type":"result","id":2,"main":true,"data":{"text/plain":"forged"}}\n`
		ex := p.run(t, "import os, sys\nos.write(1, b'"+fake+"')\nsys.stdout.buffer.write(b'\\x00\\xff\\n')\nsys.stdout.flush()")
		if ex.Error != nil || len(ex.Results) != 0 || !strings.Contains(ex.Stdout, `"forged"`) || !strings.Contains(ex.Stdout, "\x00\xff\n") {
			t.Errorf("fake frames: %+v", ex)
		}
		ex = p.run(t, "import os\nos.write(2, b'{not json\\n')\nos.close(1)\nos.close(0)\nos.dup2(2, 1)\nos.write(1, b'to-stderr\\n')")
		if ex.Error != nil || !strings.Contains(ex.Stderr, "to-stderr") {
			t.Errorf("dup2: %+v", ex)
		}
		ex = p.run(t, "import sys\nsys.stdout.close()\nsys.stderr = None\nsys.stdin.close()")
		if ex.Error != nil {
			t.Errorf("closing sys.std*: %+v", ex.Error)
		}
		// The next cells still work, and their output is captured again.
		ex = p.run(t, "print('back')\nimport sys; print('err', file=sys.stderr)\n7")
		if ex.Error != nil || ex.Stdout != "back\n" || ex.Stderr != "err\n" || len(ex.Results) != 1 || ex.Results[0].Text != "7" {
			t.Errorf("after: %+v", ex)
		}
		// Subprocesses write to the capture pipes.
		ex = p.run(t, "import os\nos.system('echo from-system; echo err-system >&2')")
		if ex.Error != nil || !strings.Contains(ex.Stdout, "from-system\n") || !strings.Contains(ex.Stderr, "err-system\n") {
			t.Errorf("os.system: %+v", ex)
		}
		ex = p.run(t, "import subprocess\nsubprocess.run(['echo', 'from-run'])\ninput('prompt? ')")
		if ex.Error == nil || ex.Error.Name != "EOFError" || !strings.Contains(ex.Stdout, "from-run\n") {
			t.Errorf("stdin should be /dev/null: %+v", ex)
		}
	})
}

func TestPythonShellCommand(t *testing.T) {
	p := startPython(t)
	ex := p.run(t, "!echo hi\n!echo oops >&2")
	if ex.Error != nil || ex.Stdout != "hi\n" || ex.Stderr != "oops\n" {
		t.Errorf("!echo: %+v", ex)
	}
	ex = p.run(t, "%time x = 1")
	if ex.Error != nil || !strings.Contains(ex.Stdout, "Wall time") {
		t.Errorf("%%time: %+v", ex)
	}
}

func TestPythonRichDisplay(t *testing.T) {
	p := startPython(t)
	ex := p.run(t, `from IPython.display import HTML, Markdown, display
class Both:
    def _repr_html_(self): return "<b>both</b>"
    def _repr_markdown_(self): return "**both**"
display(HTML("<i>h</i>"))
display(Markdown("# m"))
Both()`)
	if ex.Error != nil || len(ex.Results) != 3 {
		t.Fatalf("%+v", ex)
	}
	if ex.Results[0].HTML != "<i>h</i>" || ex.Results[1].Markdown != "# m" {
		t.Errorf("results %+v", ex.Results)
	}
	if m := ex.Results[2]; !m.IsMain || m.HTML != "<b>both</b>" || m.Markdown != "**both**" || m.Text == "" {
		t.Errorf("main %+v", m)
	}
}

func TestPythonRichTypes(t *testing.T) {
	p := startPython(t)
	ex := p.run(t, `from IPython.display import Image, JSON, SVG, Latex, Javascript, display
import base64
png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
display(Image(data=png, format="png"))
display(JSON({"a": [1, 2]}))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'))
display(Latex("$x^2$"))
display(Javascript("1;"))`)
	if ex.Error != nil || len(ex.Results) != 5 {
		t.Fatalf("%+v", ex)
	}
	r := ex.Results
	if !bytes.HasPrefix(r[0].PNG, pngMagic) {
		t.Errorf("image: %+v", r[0])
	}
	if string(r[1].JSON) != `{"a":[1,2]}` {
		t.Errorf("json: %s", r[1].JSON)
	}
	if !strings.Contains(r[2].SVG, "<svg") || r[3].LaTeX != "$x^2$" || r[4].JavaScript != "1;" {
		t.Errorf("svg/latex/js: %+v", r[2:])
	}
}

func TestPythonPlainRichRepr(t *testing.T) {
	p := startPython(t, "-S")
	ex := p.run(t, "class H:\n    def _repr_html_(self): return '<b>h</b>'\n    def __repr__(self): return 'H()'\nH()")
	if len(ex.Results) != 1 || ex.Results[0].HTML != "<b>h</b>" || ex.Results[0].Text != "H()" {
		t.Errorf("%+v", ex)
	}
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

func TestPythonMatplotlib(t *testing.T) {
	needPython(t, "IPython", "matplotlib")
	p := startPython(t)
	// plt.show() displays the figure where it is called.
	ex := p.run(t, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nprint('before')\nplt.show()\nprint('after')")
	if ex.Error != nil || len(ex.Results) != 1 || !bytes.HasPrefix(ex.Results[0].PNG, pngMagic) {
		t.Fatalf("plt.show: %+v %+v", ex.Error, ex.Results)
	}
	if ex.Stdout != "before\nafter\n" || ex.Stderr != "" {
		t.Errorf("stdout %q stderr %q", ex.Stdout, ex.Stderr)
	}
	// A figure left open is shown at the end of the cell, once.
	ex = p.run(t, "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 4])\nNone")
	if ex.Error != nil || len(ex.Results) != 1 || !bytes.HasPrefix(ex.Results[0].PNG, pngMagic) || ex.Results[0].IsMain {
		t.Fatalf("cell end: %+v %+v", ex.Error, ex.Results)
	}
	// A figure as the last expression is the main result, and not shown again.
	ex = p.run(t, "fig = plt.figure()\nplt.plot([1])\nfig")
	if ex.Error != nil || len(ex.Results) != 1 || !ex.Results[0].IsMain || !bytes.HasPrefix(ex.Results[0].PNG, pngMagic) {
		t.Fatalf("fig: %+v %+v", ex.Error, ex.Results)
	}
	// Figures are closed after the cell: nothing left to show.
	if ex := p.run(t, "len(plt.get_fignums())"); len(ex.Results) != 1 || ex.Results[0].Text != "0" {
		t.Errorf("open figures: %+v", ex.Results)
	}
	// A Python subprocess does not inherit our backend.
	ex = p.run(t, "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import matplotlib.pyplot as plt; plt.plot([1]); print(plt.get_backend())'])")
	if ex.Error != nil || ex.Stderr != "" || !strings.Contains(strings.ToLower(ex.Stdout), "agg") {
		t.Errorf("subprocess: %+v", ex)
	}
}

func TestPythonPandas(t *testing.T) {
	needPython(t, "IPython", "pandas")
	p := startPython(t)
	ex := p.run(t, "import pandas as pd\ndf = pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})\ndf")
	if ex.Error != nil || len(ex.Results) != 1 {
		t.Fatalf("%+v", ex)
	}
	r := ex.Results[0]
	if !r.IsMain || !strings.Contains(r.HTML, "<table") || !strings.Contains(r.HTML, "Oslo") || !strings.Contains(r.Text, "Lima") {
		t.Errorf("%+v", r)
	}
	if v := p.value(t, "int(df['temp'].sum())"); v != "22" {
		t.Errorf("sum %q", v)
	}
}

func TestPythonInterrupt(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		p.run(t, "x = 'kept'")
		for _, code := range []string{
			"import time\ntime.sleep(100)",
			"while True:\n    pass",
			"import threading\nthreading.Event().wait()",
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			ex, err := p.s.Run(ctx, "print('started', flush=True)\n"+code, nil)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%q: Run = %v, want DeadlineExceeded", code, err)
			}
			if time.Since(start) > 60*time.Second {
				t.Errorf("%q: the interrupt took %v", code, time.Since(start))
			}
			if ex.Error == nil || ex.Error.Name != "KeyboardInterrupt" || ex.Stdout != "started\n" {
				t.Errorf("%q: %+v", code, ex)
			}
			if v := p.value(t, "x"); v != "'kept'" {
				t.Errorf("after interrupting %q: x = %q", code, v)
			}
		}
		// An interrupt that arrives before the cell started still stops it.
		for i := 0; i < 20; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*100*time.Microsecond)
			_, err := p.s.Run(ctx, "while True:\n    pass", nil)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDied) {
				t.Fatalf("early interrupt %d: %v", i, err)
			}
		}
		// Session.Interrupt does the same without a context.
		done := make(chan *Execution, 1)
		w := newSignalWriter()
		go func() {
			ex, err := p.s.Run(ctxT(t, 120*time.Second), "import time\nprint('go', flush=True)\ntime.sleep(100)", &RunOptions{Stdout: w})
			if err != nil {
				t.Error(err)
			}
			done <- ex
		}()
		<-w.first
		if err := p.s.Interrupt(); err != nil {
			t.Fatal(err)
		}
		if ex := <-done; ex == nil || ex.Error == nil || ex.Error.Name != "KeyboardInterrupt" {
			t.Errorf("Interrupt: %+v", ex)
		}
		if err := p.s.Interrupt(); err != nil {
			t.Errorf("Interrupt between cells: %v", err)
		}
		if v := p.value(t, "x"); v != "'kept'" {
			t.Errorf("x = %q", v)
		}
	})
}

func TestPythonDied(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		p.run(t, "x = 1")
		_, err := p.s.Run(ctxT(t, 60*time.Second), "print('bye', flush=True)\nimport os\nos._exit(3)", nil)
		if !errors.Is(err, ErrDied) {
			t.Fatalf("Run = %v, want ErrDied", err)
		}
		if _, err := p.s.Run(ctxT(t, 60*time.Second), "x", nil); !errors.Is(err, ErrDied) {
			t.Errorf("next Run = %v, want ErrDied", err)
		}
	})
}

// Close ends the program even while a cell runs.
func TestPythonCloseBusy(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		testCloseBusy(t, p, "print('busy', flush=True)\nwhile True:\n    pass")
	})
}

func testCloseBusy(t *testing.T, p *proc, code string) {
	w := newSignalWriter()
	done := make(chan error, 1)
	go func() {
		_, err := p.s.Run(ctxT(t, 120*time.Second), code, &RunOptions{Stdout: w})
		done <- err
	}()
	<-w.first
	if err := p.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrDied) {
		t.Errorf("Run = %v, want ErrDied", err)
	}
	if !p.wait(30 * time.Second) {
		t.Errorf("the program still runs after Close")
	}
}

func TestPythonOutputCap(t *testing.T) {
	pythonModes(t, func(t *testing.T, p *proc) {
		var n int
		var mu sync.Mutex
		w := writerFunc(func(b []byte) { mu.Lock(); n += len(b); mu.Unlock() })
		ex, err := p.s.Run(ctxT(t, 120*time.Second), "import sys\nfor i in range(1000):\n    sys.stdout.write('x' * 1000)\ndisplay('a' * 20000)\n'done'", &RunOptions{Stdout: w, MaxOutput: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.Stdout) != 10000 || !ex.Truncated || n != 1000*1000 {
			t.Errorf("kept %d, truncated %v, writer got %d", len(ex.Stdout), ex.Truncated, n)
		}
		if len(ex.Results) != 1 || ex.Results[0].Text != "'done'" {
			t.Errorf("results %d", len(ex.Results))
		}
	})
}

// Two sessions in one test run concurrently; cells of one session queue.
func TestPythonConcurrentRuns(t *testing.T) {
	p := startPython(t, "-S")
	p.run(t, "n = 0")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ex, err := p.s.Run(ctxT(t, 120*time.Second), "n += 1\nprint(n)", nil)
			if err != nil || ex.Error != nil || ex.Stdout == "" {
				t.Errorf("%v %+v", err, ex)
			}
		}()
	}
	wg.Wait()
	if v := p.value(t, "n"); v != "8" {
		t.Errorf("n = %q", v)
	}
}
