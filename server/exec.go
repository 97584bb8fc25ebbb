package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// pingEvery is how long an exec stream may be silent before a ping event
// is sent, so that proxies do not close it as idle.
const pingEvery = 15 * time.Second

// proc is a process the server runs.
type proc struct {
	pid     int64
	sandbox string
	argv    []string
	started time.Time
	p       *compute.Process
	// stdin is where POST .../stdin writes, when the process was started
	// with ExecRequest.StdinStream.
	stdin      *io.PipeWriter
	stdinTaken atomic.Bool
	// attached says an exec stream holds the process.
	attached bool
}

func (s *Server) addProc(pc *proc) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextPID++
	pc.pid = s.nextPID
	s.procs[pc.pid] = pc
	return pc.pid
}

func (s *Server) removeProc(pid int64) {
	s.mu.Lock()
	delete(s.procs, pid)
	s.mu.Unlock()
}

// errExited is what a late stdin writer sees.
var errExited = errors.New("the process has exited")

// v1Exec runs a command and streams its output as NDJSON events until it
// exits. The process is killed when the client goes away, when the
// request times out and when the server shuts down.
func (s *Server) v1Exec(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "exec", id)
	var req wire.ExecRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	timeout, err := millis("timeout", float64(req.Timeout))
	if err != nil {
		return err
	}
	if len(req.Stdin) > 0 && req.StdinStream {
		return badRequest("give stdin or stdinStream, not both")
	}
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var stdin io.Reader
	var pr *io.PipeReader
	var pw *io.PipeWriter
	switch {
	case req.StdinStream:
		pr, pw = io.Pipe()
		stdin = pr
		// Unblock the provider's stdin copy and any stdin request once the
		// process is gone.
		defer pr.CloseWithError(errExited)
	case len(req.Stdin) > 0:
		stdin = bytes.NewReader(req.Stdin)
	}
	st := &stream{ch: make(chan wire.Event, 64), stop: make(chan struct{})}
	stdout, stderr := st.writer(wire.EventStdout), st.writer(wire.EventStderr)
	if req.CombineOutput {
		stderr = stdout // one writer: the provider uses one pipe for both
	}
	p, err := e.sb.Start(ctx, req.Argv, &compute.RunOptions{
		Env: req.Env, Dir: req.Dir, Stdin: stdin, Timeout: timeout,
		Stdout: stdout, Stderr: stderr,
		MaxOutput: -1, // the client has the output; keep no copy
	})
	if err != nil {
		s.gone(e, err)
		return err
	}
	pid := s.addProc(&proc{sandbox: id, argv: req.Argv, started: time.Now(), p: p, stdin: pw, attached: true})
	defer s.removeProc(pid)

	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s.pump(ctx, cancel, w, st, pid, p)
	return nil
}

// stream carries output from the provider's goroutines to the handler,
// which alone writes the response.
type stream struct {
	ch   chan wire.Event
	stop chan struct{} // closed when nobody reads ch any more
	once sync.Once
}

func (st *stream) halt() { st.once.Do(func() { close(st.stop) }) }

func (st *stream) writer(typ string) io.Writer { return &streamWriter{st, typ} }

type streamWriter struct {
	st  *stream
	typ string
}

// Write hands a chunk to the handler; it blocks while the client is slow
// (so a fast producer is held back, never buffered without bound) and
// drops the chunk once the stream is over.
func (w *streamWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	select {
	case w.st.ch <- wire.Event{Type: w.typ, Data: bytes.Clone(b)}:
	case <-w.st.stop:
	}
	return len(b), nil
}

// pump writes the events of one process until it exits.
func (s *Server) pump(ctx context.Context, cancel context.CancelFunc, w http.ResponseWriter, st *stream, pid int64, p *compute.Process) {
	defer st.halt()
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	broken := false
	last := time.Now()
	write := func(ev wire.Event) {
		if broken {
			return
		}
		if err := enc.Encode(ev); err != nil {
			// The client is gone: stop, and kill the process.
			broken = true
			st.halt()
			cancel()
		}
		last = time.Now()
	}
	flush := func() {
		if !broken && rc.Flush() != nil {
			broken = true
			st.halt()
			cancel()
		}
	}
	write(wire.Event{Type: wire.EventStart, PID: pid})
	flush()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case ev := <-st.ch:
			write(ev)
			if len(st.ch) == 0 {
				flush()
			}
		case <-ping.C:
			if time.Since(last) >= pingEvery {
				write(wire.Event{Type: wire.EventPing})
				flush()
			}
		case <-p.Done():
			// Every write has returned by now: what is left is in ch.
		drain:
			for {
				select {
				case ev := <-st.ch:
					write(ev)
				default:
					break drain
				}
			}
			res, err := p.Wait()
			oom := errors.Is(err, compute.ErrOutOfMemory) && res.ExitCode >= 0
			// A timeout is the command's own (ExecRequest.Timeout) unless
			// the request ran out of time: then the stream ends in an
			// error, as for any request past RequestTimeout.
			timedOut := errors.Is(err, compute.ErrTimeout) && !errors.Is(ctx.Err(), context.DeadlineExceeded)
			switch {
			case err == nil || timedOut || oom:
				code := res.ExitCode
				ev := wire.Event{Type: wire.EventExit, ExitCode: &code, Duration: max(res.Duration.Milliseconds(), 1), TimedOut: timedOut}
				if oom {
					ae := s.classify(ctx, err)
					ev.Error, ev.Code = ae.msg, ae.code
				}
				write(ev)
			default:
				ae := s.classify(ctx, err)
				write(wire.Event{Type: wire.EventError, Error: ae.msg, Code: ae.code})
			}
			flush()
			return
		}
	}
}
