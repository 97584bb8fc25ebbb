package interpreter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startNode(t testing.TB) *proc {
	t.Helper()
	needNode(t)
	return startProc(t, hostArgv(t, "node"))
}

func TestNodeReady(t *testing.T) {
	p := startNode(t)
	if r := p.ready; r.Runtime != "node" || r.Version == "" || r.Rich || r.PID <= 0 {
		t.Errorf("ready = %+v", r)
	}
}

func TestNodeState(t *testing.T) {
	p := startNode(t)
	p.run(t, "let x = 40; const y = 2; function add(a, b) { return a + b }")
	if v := p.value(t, "add(x, y)"); v != "42" {
		t.Errorf("add(x, y) = %q", v)
	}
	// A cell may declare again what an earlier one declared (rerunning a
	// cell is the usual way to fix it).
	if v := p.value(t, "let x = 1; const y = 'b'; x + y"); v != "'1b'" {
		t.Errorf("redeclared: %q", v)
	}
	if v := p.value(t, "class P { constructor() { this.n = 3 } }; new P()"); v != "P { n: 3 }" {
		t.Errorf("class: %q", v)
	}
	if v := p.value(t, "{a: 1, b: [1, 2]}"); v != "{ a: 1, b: [ 1, 2 ] }" {
		t.Errorf("object literal: %q", v)
	}
	if v := p.value(t, "const fs = require('fs'); typeof fs.readFileSync"); v != "'function'" {
		t.Errorf("require: %q", v)
	}
	if v := p.value(t, "const { join } = await import('node:path'); join('a', 'b')"); v != "'a/b'" {
		t.Errorf("import(): %q", v)
	}
	if ex := p.run(t, "undefined"); len(ex.Results) != 0 {
		t.Errorf("undefined gave %+v", ex.Results)
	}
}

func TestNodeAwait(t *testing.T) {
	p := startNode(t)
	if v := p.value(t, "const v = await new Promise(r => setTimeout(() => r(7), 10)); v * 6"); v != "42" {
		t.Errorf("await: %q", v)
	}
	if v := p.value(t, "v"); v != "7" {
		t.Errorf("a const set by an awaiting cell: %q", v)
	}
	ex := p.run(t, "await Promise.reject(new RangeError('no'))")
	if ex.Error == nil || ex.Error.Name != "RangeError" || ex.Error.Value != "no" {
		t.Errorf("rejection: %+v", ex.Error)
	}
}

func TestNodeOutput(t *testing.T) {
	p := startNode(t)
	var log []string
	opts := &RunOptions{
		Stdout:   writerFunc(func(b []byte) { log = append(log, "out:"+string(b)) }),
		Stderr:   writerFunc(func(b []byte) { log = append(log, "err:"+string(b)) }),
		OnResult: func(o Output) { log = append(log, "result:"+o.Text) },
	}
	ex, err := p.s.Run(ctxT(t, 60*time.Second), "console.log('a'); console.error('e'); process.stdout.write('b\\n'); 5", opts)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Stdout != "a\nb\n" || ex.Stderr != "e\n" || len(ex.Results) != 1 || ex.Results[0].Text != "5" {
		t.Errorf("%+v", ex)
	}
	if last := log[len(log)-1]; last != "result:5" {
		t.Errorf("events %q: the result is not last", log)
	}
	// A subprocess's output and fake frames are output like any other.
	ex = p.run(t, `require('child_process').execSync('echo sub; echo sub-err >&2', {stdio: 'inherit'});
require('fs').writeSync(1, '{"type":"end","id":1}\n\0csdk:forged:99\0\n'); 'ok'`)
	if ex.Error != nil || !strings.Contains(ex.Stdout, "sub\n") || ex.Stderr != "sub-err\n" || !strings.Contains(ex.Stdout, `{"type":"end","id":1}`) {
		t.Errorf("%+v", ex)
	}
	if v := p.value(t, "'still'"); v != "'still'" {
		t.Errorf("after: %q", v)
	}
}

// Output reaches the caller while the cell still runs.
func TestNodeStreaming(t *testing.T) {
	p := startNode(t)
	gate := filepath.Join(t.TempDir(), "gate")
	w := newSignalWriter()
	done := make(chan error, 1)
	go func() {
		_, err := p.s.Run(ctxT(t, 120*time.Second), `console.log('first');
const fs = require('fs');
while (!fs.existsSync(`+jsStr(gate)+`)) await new Promise(r => setTimeout(r, 10));
'done'`, &RunOptions{Stdout: w})
		done <- err
	}()
	select {
	case <-w.first:
	case err := <-done:
		t.Fatalf("the cell ended (%v) before its first output arrived", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func jsStr(s string) string { return "'" + strings.ReplaceAll(s, "'", "\\'") + "'" }

func TestNodeErrors(t *testing.T) {
	p := startNode(t)
	ex := p.run(t, "function boom() { throw new TypeError('bad') }\nconsole.log('before'); boom()")
	if ex.Error == nil || ex.Error.Name != "TypeError" || ex.Error.Value != "bad" || !strings.Contains(ex.Error.Traceback, "at boom") {
		t.Errorf("%+v", ex.Error)
	}
	if strings.Contains(ex.Error.Traceback, "node:inspector") {
		t.Errorf("the stack shows the driver: %s", ex.Error.Traceback)
	}
	if ex.Stdout != "before\n" {
		t.Errorf("stdout %q", ex.Stdout)
	}
	ex = p.run(t, "foo(")
	if ex.Error == nil || ex.Error.Name != "SyntaxError" {
		t.Errorf("%+v", ex.Error)
	}
	ex = p.run(t, "throw 5")
	if ex.Error == nil || ex.Error.Value != "5" {
		t.Errorf("%+v", ex.Error)
	}
	// An error thrown later by a timer does not kill the context.
	p.run(t, "setTimeout(() => { throw new Error('later') }, 0); null")
	if v := p.value(t, "await new Promise(r => setTimeout(r, 50)); 1 + 1"); v != "2" {
		t.Errorf("after a timer's error: %q", v)
	}
}

func TestNodeInterrupt(t *testing.T) {
	p := startNode(t)
	p.run(t, "let kept = 'yes'")
	for _, code := range []string{
		"while (true) {}",
		"await new Promise(() => {})",
		"await null; for (;;) {}",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		ex, err := p.s.Run(ctx, "console.log('started');\n"+code, nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%q: Run = %v, want DeadlineExceeded", code, err)
		}
		if ex.Error == nil || ex.Error.Name != "Interrupted" || ex.Stdout != "started\n" {
			t.Errorf("%q: %+v", code, ex)
		}
		if v := p.value(t, "kept"); v != "'yes'" {
			t.Errorf("after interrupting %q: kept = %q", code, v)
		}
	}
}

// An interrupt that arrives before the cell started still stops it.
func TestNodeEarlyInterrupt(t *testing.T) {
	p := startNode(t)
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*100*time.Microsecond)
		_, err := p.s.Run(ctx, "while (true) {}", nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDied) {
			t.Fatalf("early interrupt %d: %v", i, err)
		}
	}
	if v := p.value(t, "1 + 1"); v != "2" {
		t.Errorf("after: %q", v)
	}
}

func TestNodeDied(t *testing.T) {
	p := startNode(t)
	_, err := p.s.Run(ctxT(t, 60*time.Second), "process.exit(3)", nil)
	if !errors.Is(err, ErrDied) || !strings.Contains(err.Error(), "status 3") {
		t.Fatalf("Run = %v, want ErrDied with status 3", err)
	}
	if _, err := p.s.Run(ctxT(t, 60*time.Second), "1", nil); !errors.Is(err, ErrDied) {
		t.Errorf("next Run = %v", err)
	}
}

func TestNodeCloseBusy(t *testing.T) {
	testCloseBusy(t, startNode(t), "console.log('busy'); while (true) {}")
}

func TestNodeOutputCap(t *testing.T) {
	p := startNode(t)
	n := 0
	ex, err := p.s.Run(ctxT(t, 120*time.Second), "for (let i = 0; i < 1000; i++) process.stdout.write('x'.repeat(1000)); 'done'",
		&RunOptions{MaxOutput: 10000, Stdout: writerFunc(func(b []byte) { n += len(b) })})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Stdout) != 10000 || !ex.Truncated || n != 1000*1000 || len(ex.Results) != 1 {
		t.Errorf("kept %d, truncated %v, writer %d, results %d", len(ex.Stdout), ex.Truncated, n, len(ex.Results))
	}
}
