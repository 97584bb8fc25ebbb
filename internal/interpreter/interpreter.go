// Package interpreter runs stateful code cells (a code interpreter, as in
// Jupyter or E2B) in any sandbox that can start a long-lived process with
// stdin and stdout pipes.
//
// Command gives the argv of a small program, embedded here, that runs
// inside the sandbox: python.py (IPython's InteractiveShell when IPython is
// importable, the standard library alone otherwise) or node.js (a V8 REPL
// mode context). Session speaks the program's protocol over its stdin and
// stdout, one cell at a time.
//
// # Protocol
//
// One JSON object per line in both directions; binary data is base64.
// The host sends
//
//	{"type":"execute","id":N,"code":"..."}
//	{"type":"interrupt","id":N}
//	{"type":"shutdown"}
//
// and the program sends
//
//	{"type":"ready","runtime":"python","version":"3.11.2","rich":true,"mode":"ipython","pid":123}
//	{"type":"stream","id":N,"name":"stdout"|"stderr","data":"<base64>"}
//	{"type":"result","id":N,"main":bool,"data":{"text/plain":"...","image/png":"<base64>",...}}
//	{"type":"error","id":N,"name":"ZeroDivisionError","value":"...","traceback":"..."}
//	{"type":"end","id":N}
//	{"type":"exit","code":3,"signal":null}     (node: the interpreter exited)
//	{"type":"fatal","message":"..."}           (the program could not start)
//
// Everything a cell produces comes between its execute and its end, in the
// order it was produced: a result follows the output printed before it.
// The programs keep the protocol away from the user's code: it travels on
// private file descriptors (Python) or between two processes (Node), while
// the user's fds 0/1/2 are /dev/null and pipes the program reads itself, so
// a cell may print anything, close or dup the standard fds and start
// subprocesses without breaking or forging the framing.
package interpreter

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/internal/cellout"
)

//go:embed python.py
var pythonSource string

//go:embed node.js
var nodeSource string

// ErrDied is wrapped by the errors of a Session whose program exited, whose
// stream broke or carried something that is not the protocol, or that did
// not stop a cell after an interrupt. The session is then unusable: every
// later call returns an error wrapping ErrDied, and the caller should kill
// the process and start a new one.
var ErrDied = errors.New("interpreter: the interpreter program died")

// ErrNotStopped is wrapped, with ErrDied, by the error of a Run whose
// cell did not end within the grace after its interrupt: the program is
// alive but the session gave up on it.
var ErrNotStopped = errors.New("the cell did not stop when interrupted")

// Command returns the argv that starts the interpreter program for runtime
// "python" or "node". The program's source travels as an argument rather
// than as a file in the sandbox, which saves a filesystem round trip before
// the first cell; each is well under Linux's 128 KiB limit on one argument.
// The interpreter is looked up on the sandbox's PATH, as RunCode does.
func Command(runtime string) ([]string, error) {
	switch runtime {
	case "python":
		// -u: anything printed before the program takes over fds 1 and 2
		// is not held in a buffer.
		return []string{"python3", "-u", "-c", pythonSource}, nil
	case "node":
		return []string{"node", "-e", nodeSource}, nil
	}
	return nil, fmt.Errorf("interpreter: unknown runtime %q (want \"python\" or \"node\")", runtime)
}

// The values of a cell are package driver's, so that package compute
// hands them to users as they are.
type (
	// Output is one display output of a cell: a MIME bundle.
	Output = driver.Output
	// CellError is an exception the cell's code raised.
	CellError = driver.CellError
	// Execution is what a cell produced.
	Execution = driver.Execution
)

// Ready is what the program reports once it is ready for cells.
type Ready struct {
	// Runtime is "python" or "node".
	Runtime string
	// Version is the interpreter's version, e.g. "3.11.2" or "20.11.0".
	Version string
	// Rich reports that Python found IPython: rich display, magics and
	// !commands. Without it cells still keep state, print, return the last
	// expression's repr and report errors. Always false for Node.
	Rich bool
	// PID is the process id, inside the sandbox, of the process that runs
	// the cells.
	PID int
}

// RunOptions are Run's options; the zero value (or nil) is valid.
type RunOptions struct {
	// Stdout and Stderr, when set, receive the cell's output as it arrives,
	// all of it, whatever MaxOutput says. They are called from Run's
	// goroutine; a write error stops further writes to that writer only.
	Stdout, Stderr io.Writer
	// OnResult, when set, is called with each display output as it
	// arrives, from Run's goroutine.
	OnResult func(Output)
	// MaxOutput caps each of Execution.Stdout and Execution.Stderr, and
	// separately the total size of Execution.Results; 0 means
	// DefaultMaxOutput, negative keeps nothing (the writers and OnResult
	// still get everything).
	MaxOutput int
}

// DefaultMaxOutput is RunOptions.MaxOutput's default: 16 MiB.
const DefaultMaxOutput = 16 << 20

// maxFrame is the largest message read from the program; a larger one (an
// enormous display output) is skipped and the cell marked Truncated, so
// that one result cannot exhaust the host's memory.
var maxFrame = 64 << 20

// interruptGrace is how long Run waits for a cell to end after it sent an
// interrupt because its context was done. An interrupted cell normally
// ends within milliseconds; on a machine loaded with other interpreters
// the signal, the interpreter's handling of it and the end frame can
// take seconds (2 s, then 5 s through the Modal emulator, were seen to be
// too short in CI), and giving up kills the interpreter with all its
// state.
var interruptGrace = 15 * time.Second

// Session speaks the protocol with one running interpreter program. Its
// methods are safe for concurrent use; cells run one at a time.
type Session struct {
	w        io.WriteCloser
	r        io.Reader
	maxFrame int

	wmu    sync.Mutex    // serializes frames written to w
	turn   chan struct{} // holds one token: the right to run a cell
	nextID int64         // guarded by turn

	cell atomic.Pointer[cell] // the running cell, nil between cells

	readyCh chan struct{} // closed when ready is set
	ready   *Ready

	dead    chan struct{} // closed by fail
	failErr error         // set before dead is closed
	once    sync.Once
	closed  atomic.Bool
}

// cell is the running cell as the reader goroutine sees it.
type cell struct {
	id     int64
	events chan event
	over   chan struct{} // closed when Run returns: stop delivering
}

type eventKind int

const (
	evStream eventKind = iota
	evResult
	evError
	evEnd
	evDropped // a frame too large to read
)

type event struct {
	kind   eventKind
	stderr bool
	data   []byte
	out    Output
	err    *CellError
}

// NewSession starts speaking the protocol with a program whose stdin is w
// and whose stdout is r (as started from Command's argv). It reads r in a
// goroutine until r ends or fails; closing r (or killing the program)
// ends it.
func NewSession(w io.WriteCloser, r io.Reader) *Session {
	s := &Session{
		w:        w,
		r:        r,
		maxFrame: maxFrame,
		turn:     make(chan struct{}, 1),
		readyCh:  make(chan struct{}),
		dead:     make(chan struct{}),
	}
	s.turn <- struct{}{}
	go s.readLoop()
	return s
}

// fail marks the session dead with err (which wraps ErrDied); the first
// failure wins.
func (s *Session) fail(err error) {
	s.once.Do(func() {
		s.failErr = err
		close(s.dead)
	})
}

// Err returns why the session is unusable (an error wrapping ErrDied), or
// nil while it is usable.
func (s *Session) Err() error {
	select {
	case <-s.dead:
		return s.failErr
	default:
		return nil
	}
}

// Ready waits for the program's ready message, which it sends once the
// interpreter is set up (IPython imported), and returns it.
func (s *Session) Ready(ctx context.Context) (*Ready, error) {
	select {
	case <-s.readyCh:
		r := *s.ready
		return &r, nil
	default:
	}
	select {
	case <-s.readyCh:
		r := *s.ready
		return &r, nil
	case <-s.dead:
		select {
		case <-s.readyCh:
			r := *s.ready
			return &r, nil
		default:
		}
		return nil, s.failErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run runs one cell and returns what it produced. An exception in the
// code is Execution.Error, not a Go error; a Go error means the cell could
// not run or finish.
//
// When ctx is done during the cell, Run interrupts it (Python gets a
// KeyboardInterrupt; Node's evaluation is stopped), waits for the cell to
// end, and returns the partial Execution with ctx.Err(): the session and
// its state survive. If the cell does not end within a grace period after
// the interrupt, the error wraps both ErrDied and ctx.Err() and the
// session is unusable. Callers implement cell timeouts with
// context.WithTimeout.
//
// A second concurrent Run waits for the first to finish.
func (s *Session) Run(ctx context.Context, code string, opts *RunOptions) (*Execution, error) {
	if opts == nil {
		opts = &RunOptions{}
	}
	select {
	case <-s.turn:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.dead:
		return nil, s.failErr
	}
	defer func() { s.turn <- struct{}{} }()
	if err := s.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("%w: the session was closed", ErrDied)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s.nextID++
	c := &cell{id: s.nextID, events: make(chan event), over: make(chan struct{})}
	s.cell.Store(c)
	defer func() {
		s.cell.Store(nil)
		close(c.over)
	}()
	if err := s.send(frame{Type: "execute", ID: c.id, Code: code}); err != nil {
		return nil, err
	}

	limit := opts.MaxOutput
	if limit == 0 {
		limit = DefaultMaxOutput
	}
	col := cellout.New(limit, opts.Stdout, opts.Stderr, opts.OnResult)

	done := ctx.Done()
	var grace <-chan time.Time
	for {
		select {
		case ev := <-c.events:
			switch ev.kind {
			case evStream:
				if ev.stderr {
					col.Stderr(ev.data)
				} else {
					col.Stdout(ev.data)
				}
			case evResult:
				col.Result(ev.out)
			case evError:
				col.Error(ev.err)
			case evDropped:
				col.Truncated()
			case evEnd:
				if grace != nil {
					return col.Execution(), ctx.Err()
				}
				return col.Execution(), nil
			}
		case <-done:
			done = nil
			if err := s.send(frame{Type: "interrupt", ID: c.id}); err != nil {
				return col.Execution(), err
			}
			t := time.NewTimer(interruptGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			err := fmt.Errorf("%w: %w within %v: %w", ErrDied, ErrNotStopped, interruptGrace, ctx.Err())
			s.fail(err)
			return col.Execution(), err
		case <-s.dead:
			return col.Execution(), s.failErr
		}
	}
}

// Interrupt interrupts the running cell, if any, as a done context does,
// but without waiting: the cell's Run returns once the program has stopped
// it.
func (s *Session) Interrupt() error {
	if err := s.Err(); err != nil {
		return err
	}
	c := s.cell.Load()
	if c == nil {
		return nil
	}
	return s.send(frame{Type: "interrupt", ID: c.id})
}

// Close asks the program to exit and closes its stdin; it does not wait for
// the program to exit. A running cell's Run returns an error wrapping
// ErrDied once the program is gone. Close is idempotent.
func (s *Session) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	_ = s.send(frame{Type: "shutdown"})
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.w.Close()
}

// frame is a message to the program.
type frame struct {
	Type string `json:"type"`
	ID   int64  `json:"id,omitempty"`
	Code string `json:"code,omitempty"`
}

func (s *Session) send(f frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.w.Write(b); err != nil {
		err = fmt.Errorf("%w: writing to the program: %v", ErrDied, err)
		s.fail(err)
		return err
	}
	return nil
}

// message is a message from the program; which fields are set depends on
// Type.
type message struct {
	Type string          `json:"type"`
	ID   int64           `json:"id"`
	Name string          `json:"name"` // stream name, or error name
	Data json.RawMessage `json:"data"` // stream: base64 string; result: MIME bundle
	Main bool            `json:"main"`

	Value     string `json:"value"`
	Traceback string `json:"traceback"`

	Runtime string `json:"runtime"`
	Version string `json:"version"`
	Rich    bool   `json:"rich"`
	PID     int    `json:"pid"`

	Message string  `json:"message"`
	Code    *int    `json:"code"`
	Signal  *string `json:"signal"`
}

func (s *Session) readLoop() {
	br := bufio.NewReaderSize(s.r, 64<<10)
	var line []byte
	for {
		if cap(line) > 1<<20 {
			line = nil // do not hold on to the buffer of one huge frame
		}
		var tooBig bool
		var err error
		line, tooBig, err = readFrame(br, line[:0], s.maxFrame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.fail(fmt.Errorf("%w: it closed its output (exited)", ErrDied))
			} else {
				s.fail(fmt.Errorf("%w: reading its output: %v", ErrDied, err))
			}
			return
		}
		if tooBig {
			if !s.deliver(s.cell.Load(), event{kind: evDropped}) {
				return
			}
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			s.fail(fmt.Errorf("%w: malformed frame %s: %v", ErrDied, quote(line), err))
			return
		}
		var ev event
		switch m.Type {
		case "ready":
			if s.ready == nil {
				s.ready = &Ready{Runtime: m.Runtime, Version: m.Version, Rich: m.Rich, PID: m.PID}
				close(s.readyCh)
			}
			continue
		case "fatal":
			s.fail(fmt.Errorf("%w: it failed to start: %s", ErrDied, m.Message))
			return
		case "exit":
			how := "exited"
			if m.Signal != nil && *m.Signal != "" {
				how = "was killed by " + *m.Signal
			} else if m.Code != nil {
				how = fmt.Sprintf("exited with status %d", *m.Code)
			}
			s.fail(fmt.Errorf("%w: the interpreter %s", ErrDied, how))
			return
		case "stream":
			var data []byte
			if err := json.Unmarshal(m.Data, &data); err != nil {
				s.fail(fmt.Errorf("%w: malformed stream frame %s: %v", ErrDied, quote(line), err))
				return
			}
			ev = event{kind: evStream, stderr: m.Name == "stderr", data: data}
		case "result":
			var bundle map[string]json.RawMessage
			if err := json.Unmarshal(m.Data, &bundle); err != nil {
				s.fail(fmt.Errorf("%w: malformed result frame %s: %v", ErrDied, quote(line), err))
				return
			}
			ev = event{kind: evResult, out: toOutput(bundle, m.Main)}
		case "error":
			ev = event{kind: evError, err: &CellError{Name: m.Name, Value: m.Value, Traceback: m.Traceback}}
		case "end":
			ev = event{kind: evEnd}
		default:
			continue // a message type from a newer program
		}
		c := s.cell.Load()
		if c == nil || c.id != m.ID {
			continue // late output of a cell that has ended
		}
		if !s.deliver(c, ev) {
			return
		}
	}
}

// deliver hands ev to the running cell c; it reports false when the
// session is dead and the loop should stop.
func (s *Session) deliver(c *cell, ev event) bool {
	if c == nil {
		return true
	}
	select {
	case c.events <- ev:
	case <-c.over:
	case <-s.dead:
		return false
	}
	return true
}

// readFrame reads one line into buf. A line over limit is consumed and
// reported as tooBig without being kept.
func readFrame(br *bufio.Reader, buf []byte, limit int) (line []byte, tooBig bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooBig {
			if len(buf)+len(chunk) > limit {
				tooBig, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			return buf, tooBig, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if errors.Is(err, io.EOF) && len(buf) > 0 && !tooBig {
				// A last line without a newline: still a frame.
				return buf, false, nil
			}
			return buf, tooBig, err
		}
	}
}

func quote(b []byte) string {
	const n = 200
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// toOutput picks the MIME types Output knows out of a bundle; a value of
// the wrong shape is left out rather than failing the cell.
func toOutput(bundle map[string]json.RawMessage, main bool) Output {
	o := Output{IsMain: main}
	str := func(raw json.RawMessage, dst *string) { _ = json.Unmarshal(raw, dst) }
	bin := func(raw json.RawMessage, dst *[]byte) { _ = json.Unmarshal(raw, dst) }
	for mime, raw := range bundle {
		switch mime {
		case "text/plain":
			str(raw, &o.Text)
		case "text/html":
			str(raw, &o.HTML)
		case "text/markdown":
			str(raw, &o.Markdown)
		case "image/svg+xml":
			str(raw, &o.SVG)
		case "text/latex":
			str(raw, &o.LaTeX)
		case "application/javascript":
			str(raw, &o.JavaScript)
		case "image/png":
			bin(raw, &o.PNG)
		case "image/jpeg":
			bin(raw, &o.JPEG)
		case "application/pdf":
			bin(raw, &o.PDF)
		case "application/json":
			o.JSON = append(json.RawMessage(nil), raw...)
		}
	}
	return o
}
