// Package cellout gathers what a code cell produces as it streams in,
// the same way wherever the cell runs (a provider's interpreter session,
// or a compute server's cell stream read by package remote): stdout and
// stderr go to the caller's writers as they come and are kept up to a
// limit each; display results go to a callback and are kept within the
// same byte budget.
package cellout

import (
	"io"

	"github.com/computesdk-go/compute/driver"
)

// Collector gathers one cell's output into an Execution. It is not safe
// for concurrent use.
type Collector struct {
	ex             driver.Execution
	limit          int
	stdout, stderr capped
	outW, errW     writer
	onResult       func(driver.Output)
	resultBytes    int
}

// New returns a Collector that keeps up to limit bytes of each stream
// and of results (negative: nothing kept; the writers and onResult still
// get everything) and forwards streams to stdout and stderr (either may
// be nil) and results to onResult (may be nil).
func New(limit int, stdout, stderr io.Writer, onResult func(driver.Output)) *Collector {
	return &Collector{
		limit:    limit,
		stdout:   capped{max: limit},
		stderr:   capped{max: limit},
		outW:     writer{w: stdout},
		errW:     writer{w: stderr},
		onResult: onResult,
	}
}

// Stdout takes output the cell wrote to its standard output.
func (c *Collector) Stdout(p []byte) {
	c.outW.write(p)
	c.stdout.add(p)
}

// Stderr takes output the cell wrote to its standard error.
func (c *Collector) Stderr(p []byte) {
	c.errW.write(p)
	c.stderr.add(p)
}

// Result takes a display result (an expression's value, a chart).
func (c *Collector) Result(o driver.Output) {
	if c.onResult != nil {
		c.onResult(o)
	}
	if c.limit < 0 {
		return
	}
	if n := o.Size(); c.resultBytes+n <= c.limit {
		c.resultBytes += n
		c.ex.Results = append(c.ex.Results, o)
	} else {
		c.ex.Truncated = true
	}
}

// Error takes the cell's error; the first one is kept.
func (c *Collector) Error(e *driver.CellError) {
	if c.ex.Error == nil {
		c.ex.Error = e
	}
}

// Truncated records that output was dropped before it reached the
// collector.
func (c *Collector) Truncated() { c.ex.Truncated = true }

// Execution returns what was gathered so far. Later calls of the other
// methods do not change it.
func (c *Collector) Execution() *driver.Execution {
	ex := c.ex
	ex.Results = append([]driver.Output(nil), c.ex.Results...)
	ex.Stdout, ex.Stderr = string(c.stdout.b), string(c.stderr.b)
	ex.Truncated = ex.Truncated || c.stdout.trunc || c.stderr.trunc
	return &ex
}

// capped keeps the first max bytes written to it; negative max keeps
// nothing.
type capped struct {
	b     []byte
	max   int
	trunc bool
}

func (c *capped) add(p []byte) {
	if c.max < 0 {
		return
	}
	room := c.max - len(c.b)
	if len(p) > room {
		c.b = append(c.b, p[:max(room, 0)]...)
		c.trunc = true
		return
	}
	c.b = append(c.b, p...)
}

// writer forwards to w until w fails once: a caller's writer that fails
// stops getting output, and the cell goes on.
type writer struct {
	w      io.Writer
	failed bool
}

func (w *writer) write(p []byte) {
	if w.w == nil || w.failed || len(p) == 0 {
		return
	}
	if _, err := w.w.Write(p); err != nil {
		w.failed = true
	}
}
