package interpreter

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// The tests run the programs on the host with os/exec, as a sandbox would
// start them: no sandbox is needed. They use /usr/bin/python3 and
// /usr/bin/node, the interpreters sandboxes run, rather than whatever is
// first on PATH.
const (
	hostPython = "/usr/bin/python3"
	hostNode   = "/usr/bin/node"
)

var (
	moduleMu sync.Mutex
	modules  = map[string]bool{}
)

// needPython skips the test unless python3 can import every module named.
func needPython(t testing.TB, mods ...string) {
	t.Helper()
	if _, err := os.Stat(hostPython); err != nil {
		t.Skipf("no %s", hostPython)
	}
	for _, m := range mods {
		moduleMu.Lock()
		ok, known := modules[m]
		if !known {
			ok = exec.Command(hostPython, "-c", "import "+m).Run() == nil
			modules[m] = ok
		}
		moduleMu.Unlock()
		if !ok {
			t.Skipf("python3 cannot import %s (apt-get install python3-ipython python3-matplotlib python3-pandas)", m)
		}
	}
}

func needNode(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(hostNode); err != nil {
		t.Skipf("no %s", hostNode)
	}
}

// hostArgv is Command's argv with the host's interpreter and extra
// interpreter flags (e.g. -S, which hides IPython).
func hostArgv(t testing.TB, runtime string, flags ...string) []string {
	t.Helper()
	argv, err := Command(runtime)
	if err != nil {
		t.Fatal(err)
	}
	switch runtime {
	case "python":
		argv[0] = hostPython
	case "node":
		argv[0] = hostNode
	}
	return append(append([]string{argv[0]}, flags...), argv[1:]...)
}

// proc is a program started for a test.
type proc struct {
	s      *Session
	cmd    *exec.Cmd
	ready  *Ready
	stderr *bytes.Buffer
	once   sync.Once
	exited chan struct{} // closed when the process has been reaped
}

// wait reports whether the process exited within d.
func (p *proc) wait(d time.Duration) bool {
	p.once.Do(func() {
		go func() {
			_ = p.cmd.Wait()
			close(p.exited)
		}()
	})
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// startProc starts argv and waits for it to be ready; cleanup closes the
// session and reaps the process.
func startProc(t testing.TB, argv []string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	p.cmd.Stderr = &lockedBuffer{b: p.stderr}
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.s = NewSession(stdin, stdout)
	t.Cleanup(func() {
		_ = p.s.Close()
		if !p.wait(20 * time.Second) {
			_ = p.cmd.Process.Kill()
			p.wait(time.Minute)
			t.Errorf("the program did not exit after Close")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p.ready, err = p.s.Ready(ctx)
	if err != nil {
		t.Fatalf("Ready: %v (stderr: %s)", err, p.stderr)
	}
	return p
}

// run runs a cell that must not fail in Go terms.
func (p *proc) run(t testing.TB, code string) *Execution {
	t.Helper()
	ex, err := p.s.Run(ctxT(t, 120*time.Second), code, nil)
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return ex
}

// main returns the cell's main result's text, failing the test on an error.
func (p *proc) value(t testing.TB, code string) string {
	t.Helper()
	ex := p.run(t, code)
	if ex.Error != nil {
		t.Fatalf("Run(%q) raised %s: %s\n%s", code, ex.Error.Name, ex.Error.Value, ex.Error.Traceback)
	}
	for _, r := range ex.Results {
		if r.IsMain {
			return r.Text
		}
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// signalWriter closes first on its first non-empty write.
type signalWriter struct {
	once  sync.Once
	first chan struct{}
	mu    sync.Mutex
	buf   bytes.Buffer
}

func newSignalWriter() *signalWriter { return &signalWriter{first: make(chan struct{})} }

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	if len(p) > 0 {
		w.once.Do(func() { close(w.first) })
	}
	return len(p), nil
}
