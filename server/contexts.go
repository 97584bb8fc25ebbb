package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// Code contexts: stateful interpreters kept in a sandbox across requests.
// The server's one Compute holds them (package compute keeps the generic
// ones per Compute, and drops them when the sandbox is destroyed through
// it, as every destroy of the server is); the handlers find them by id
// through Sandbox.CodeContexts, so the server keeps no table of its own.

// maxContexts caps the live code contexts of one sandbox: each is an
// interpreter in the sandbox and a few goroutines and pipes here.
const maxContexts = 64

// cellChunk is the most output one stdout or stderr event of a cell's
// stream carries; a larger write is split.
const cellChunk = 256 << 10

func contextNotFound(sandbox, id string) *apiError {
	return errorf(wire.CodeContextNotFound, "code context %s of sandbox %s not found (it may have been closed)", id, sandbox)
}

// contextErr is what the client is told of err from a code context's
// call: a context that is not there (closed meanwhile, or its sandbox
// destroyed) is context_not_found, not an unknown sandbox.
func (s *Server) contextErr(e *entry, err error) error {
	if errors.Is(err, compute.ErrNotFound) {
		s.gone(e, err) // the sandbox itself may have ended
		return &apiError{status: wire.Status(wire.CodeContextNotFound), code: wire.CodeContextNotFound, msg: err.Error()}
	}
	s.gone(e, err)
	return err
}

// findContext returns the sandbox's code context named in the path.
func (s *Server) findContext(ctx context.Context, e *entry, id string) (*compute.CodeContext, error) {
	list, err := e.sb.CodeContexts(ctx)
	if err != nil {
		s.gone(e, err)
		return nil, err
	}
	for _, cc := range list {
		if cc.ID() == id {
			return cc, nil
		}
	}
	return nil, contextNotFound(e.sb.ID(), id)
}

// sandboxContext acquires the sandbox in the path and finds its context.
func (s *Server) sandboxContext(r *http.Request, op string) (*entry, *compute.CodeContext, func(), error) {
	id := r.PathValue("id")
	annotate(r, op, id)
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return nil, nil, nil, err
	}
	cc, err := s.findContext(r.Context(), e, r.PathValue("ctx"))
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	return e, cc, release, nil
}

func contextInfo(cc *compute.CodeContext) *wire.ContextInfo {
	info := cc.Info()
	wi := wire.NewContextInfo(&info)
	return &wi
}

func (s *Server) v1NewContext(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "context", id)
	var req wire.CreateContextRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()
	// The creates in flight count before the list is taken: a create
	// that finished before this count is in the list.
	e.contextsStarting.Add(1)
	defer e.contextsStarting.Add(-1)
	starting := int(e.contextsStarting.Load())
	list, err := e.sb.CodeContexts(r.Context())
	if err != nil {
		s.gone(e, err)
		return err
	}
	if len(list)+starting > maxContexts {
		return errorf(wire.CodeLimit, "sandbox %s already has its maximum of %d code contexts; close one first", id, maxContexts)
	}
	cc, err := e.sb.NewCodeContext(r.Context(), &compute.CodeContextOptions{Runtime: compute.Runtime(req.Runtime), Dir: req.Dir, Env: req.Env})
	if err != nil {
		s.gone(e, err)
		return err
	}
	writeJSON(w, http.StatusCreated, contextInfo(cc))
	return nil
}

func (s *Server) v1Contexts(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "contexts", id)
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()
	list, err := e.sb.CodeContexts(r.Context())
	if err != nil {
		s.gone(e, err)
		return err
	}
	out := wire.ContextList{Contexts: make([]wire.ContextInfo, 0, len(list))}
	for _, cc := range list {
		out.Contexts = append(out.Contexts, *contextInfo(cc))
	}
	writeJSON(w, http.StatusOK, &out)
	return nil
}

func (s *Server) v1ContextInfo(w http.ResponseWriter, r *http.Request) error {
	_, cc, release, err := s.sandboxContext(r, "context")
	if err != nil {
		return err
	}
	defer release()
	writeJSON(w, http.StatusOK, contextInfo(cc))
	return nil
}

func (s *Server) v1CloseContext(w http.ResponseWriter, r *http.Request) error {
	e, cc, release, err := s.sandboxContext(r, "close context")
	if err != nil {
		return err
	}
	defer release()
	if err := cc.Close(r.Context()); err != nil {
		return s.contextErr(e, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) v1RestartContext(w http.ResponseWriter, r *http.Request) error {
	e, cc, release, err := s.sandboxContext(r, "restart context")
	if err != nil {
		return err
	}
	defer release()
	if err := cc.Restart(r.Context()); err != nil {
		return s.contextErr(e, err)
	}
	writeJSON(w, http.StatusOK, contextInfo(cc))
	return nil
}

// v1RunCell runs one cell and streams what it produces as NDJSON events,
// each written and flushed as it comes. The server keeps none of it (the
// cell runs with MaxOutput -1): a slow client holds the cell back, its
// output is never buffered here. The client going away interrupts the
// cell; the context keeps its state.
func (s *Server) v1RunCell(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "run cell", id)
	var req wire.RunCellRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	timeout, err := millis("timeout", float64(req.Timeout))
	if err != nil {
		return err
	}
	if strings.ContainsRune(req.Code, 0) {
		return badRequest("code contains a NUL byte")
	}
	e, cc, release, err := s.sandboxContext(r, "run cell")
	if err != nil {
		return err
	}
	defer release()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	cs := newCellStream(w, cancel, s.opts.MaxOutputBytes)
	cs.flush()

	stopPing := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-stopPing:
				return
			case <-t.C:
				cs.ping()
			}
		}
	})
	ex, err := cc.Run(ctx, req.Code, &compute.CellOptions{
		Timeout:   timeout,
		Stdout:    cellWriter{cs, wire.CellEventStdout},
		Stderr:    cellWriter{cs, wire.CellEventStderr},
		OnResult:  cs.result,
		MaxOutput: -1, // the client has the output; keep no copy
	})
	close(stopPing)
	wg.Wait()

	if ex != nil && ex.Error != nil {
		cs.send(&wire.CellEvent{Type: wire.CellEventError, Name: ex.Error.Name, Value: ex.Error.Value, Traceback: ex.Error.Traceback})
	}
	if err != nil {
		ae := s.cellFailure(ctx, e, err)
		annotateError(r, ae.msg)
		cs.send(&wire.CellEvent{Type: wire.CellEventFailure, Error: ae.msg, Code: ae.code})
		return nil
	}
	cs.send(&wire.CellEvent{Type: wire.CellEventEnd, Truncated: ex.Truncated || cs.dropped()})
	return nil
}

// cellFailure is what the failure event of a cell's stream says of err.
func (s *Server) cellFailure(ctx context.Context, e *entry, err error) *apiError {
	if ctx.Err() == nil {
		// The cell's own timeout, or its interpreter gone: say so, whatever
		// else the error wraps.
		if code := wire.Code(err); code == wire.CodeContextDied || code == wire.CodeTimeout {
			return &apiError{status: wire.Status(code), code: code, msg: err.Error()}
		}
	}
	return s.classify(ctx, s.contextErr(e, err))
}

// annotateError records a stream's failure for the access log.
func annotateError(r *http.Request, msg string) {
	if info, _ := r.Context().Value(reqInfoKey{}).(*reqInfo); info != nil {
		info.mu.Lock()
		info.errMsg = msg
		info.mu.Unlock()
	}
}

// cellStream writes a cell's events. The cell's writers and OnResult
// call it from the goroutine of Run, the pinger from its own: each event
// is written whole, in turn, and flushed.
type cellStream struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	enc       *json.Encoder
	cancel    context.CancelFunc
	maxResult int

	mu      sync.Mutex
	broken  bool // the client is gone: write nothing more
	last    time.Time
	skipped bool // a result too large to carry was left out
}

func newCellStream(w http.ResponseWriter, cancel context.CancelFunc, maxResult int) *cellStream {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // HTML outputs stay readable and small
	return &cellStream{w: w, rc: http.NewResponseController(w), enc: enc, cancel: cancel, maxResult: maxResult, last: time.Now()}
}

// send writes and flushes one event; once a write fails it stops the cell
// (the client is gone) and writes nothing more.
func (c *cellStream) send(ev *wire.CellEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendLocked(ev)
}

func (c *cellStream) sendLocked(ev any) {
	if c.broken {
		return
	}
	err := c.enc.Encode(ev)
	if err == nil {
		err = c.rc.Flush()
	}
	if err != nil {
		c.broken = true
		c.cancel()
	}
	c.last = time.Now()
}

func (c *cellStream) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.broken && c.rc.Flush() != nil {
		c.broken = true
		c.cancel()
	}
}

// ping writes a ping event after pingEvery of silence.
func (c *cellStream) ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.last) >= pingEvery {
		c.sendLocked(&wire.Event{Type: wire.EventPing})
	}
}

// result sends a display output, unless it is larger than a reply may
// be: then it is left out and the end event says truncated.
func (c *cellStream) result(o compute.Output) {
	if o.Size() > c.maxResult {
		c.mu.Lock()
		c.skipped = true
		c.mu.Unlock()
		return
	}
	c.send(&wire.CellEvent{Type: wire.CellEventResult, Main: o.IsMain, Bundle: wire.NewMIMEBundle(&o)})
}

func (c *cellStream) dropped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skipped
}

// cellWriter sends what a cell prints as stdout or stderr events.
type cellWriter struct {
	cs  *cellStream
	typ string
}

func (w cellWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := min(len(b), cellChunk)
		w.cs.send(&wire.CellEvent{Type: w.typ, Data: b[:k]})
		b = b[k:]
	}
	return n, nil
}
