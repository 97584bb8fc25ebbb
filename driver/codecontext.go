package driver

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// CodeContexter is implemented by a Sandbox that keeps code contexts
// itself, such as a client of a server that does (package remote).
// Without it, package compute runs each context as a long-lived
// interpreter process started with Sandbox.Start, which works on every
// provider.
type CodeContexter interface {
	// NewCodeContext starts a context. opts is never nil and has been
	// validated by package compute.
	NewCodeContext(ctx context.Context, opts *CodeContextOptions) (CodeContext, error)
	// CodeContexts lists the sandbox's live contexts.
	CodeContexts(ctx context.Context) ([]CodeContext, error)
}

// CodeContext is one stateful interpreter in a sandbox, as a
// CodeContexter implements it.
type CodeContext interface {
	// Info describes the context.
	Info() CodeContextInfo
	// Run runs one cell. See compute.CodeContext.Run for the contract:
	// an exception in the code is Execution.Error; a Go error means the
	// cell could not run or finish (an error matching ErrTimeout when
	// opts.Timeout passed, ErrContextDied when the interpreter is gone).
	// opts is never nil.
	Run(ctx context.Context, code string, opts *CellOptions) (*Execution, error)
	// Restart replaces the interpreter with a fresh one, same id.
	Restart(ctx context.Context) error
	// Close stops the interpreter and forgets the context.
	Close(ctx context.Context) error
}

// CodeContextOptions configures a new code context. The zero value (or
// nil) is a Python context in the sandbox's working directory.
type CodeContextOptions struct {
	// Runtime is Python (the default) or Node.
	Runtime Runtime
	// Dir is the interpreter's working directory; empty means the
	// sandbox's.
	Dir string
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string
}

// CodeContextInfo describes a code context.
type CodeContextInfo struct {
	// ID names the context within its sandbox.
	ID string
	// Runtime is Python or Node.
	Runtime Runtime
	// Version is the interpreter's version ("3.11.2", "20.19.2").
	Version string
	// Rich reports that the Python interpreter has IPython: rich display
	// (HTML, PNG, charts), magics and !commands. Without IPython cells
	// still keep state, stream output, return the last expression's repr
	// and report errors. Always false for Node.
	Rich bool
	// Dir is the working directory the context was started in ("" for
	// the sandbox's).
	Dir string
	// CreatedAt is when the context was created.
	CreatedAt time.Time
}

// CellOptions are the options of one cell. The zero value (or nil) runs
// the cell with no timeout beyond ctx's, keeping its output.
type CellOptions struct {
	// Timeout interrupts the cell when it passes; Run then returns an
	// error matching ErrTimeout, and the context keeps its state. Zero
	// means none.
	Timeout time.Duration
	// Stdout and Stderr receive what the cell prints as it is produced,
	// all of it, whatever MaxOutput says.
	Stdout, Stderr io.Writer
	// OnResult is called with each display output as it is produced.
	OnResult func(Output)
	// MaxOutput caps each of Execution.Stdout and Execution.Stderr, and
	// separately the total size of Execution.Results; 0 means 16 MiB,
	// negative keeps nothing (the writers and OnResult still see all).
	MaxOutput int
}

// Output is one display output of a cell: a MIME bundle, what Jupyter
// calls display_data (something shown along the way: a chart on
// plt.show(), IPython.display.display(df)) or execute_result (the value of
// the cell's last expression, IsMain). Fields the interpreter did not
// send are empty; most outputs carry Text beside a richer form.
type Output struct {
	Text       string          // text/plain
	HTML       string          // text/html
	Markdown   string          // text/markdown
	SVG        string          // image/svg+xml
	LaTeX      string          // text/latex
	JavaScript string          // application/javascript
	PNG        []byte          // image/png
	JPEG       []byte          // image/jpeg
	PDF        []byte          // application/pdf
	JSON       json.RawMessage // application/json
	// IsMain marks the value of the cell's last expression, as opposed to
	// something displayed along the way.
	IsMain bool
}

// Size is what an Output counts against CellOptions.MaxOutput: the sum of
// its fields' lengths.
func (o *Output) Size() int {
	return len(o.Text) + len(o.HTML) + len(o.Markdown) + len(o.SVG) + len(o.LaTeX) +
		len(o.JavaScript) + len(o.PNG) + len(o.JPEG) + len(o.PDF) + len(o.JSON)
}

// CellError is an exception a cell's code raised (a syntax error in it,
// or the interrupt that stopped it). It is part of the Execution, not a
// Go error: the cell ran, and failed.
type CellError struct {
	// Name is the exception's type: "ZeroDivisionError", "SyntaxError",
	// "KeyboardInterrupt" (Python); "TypeError", "ReferenceError",
	// "Interrupted" (Node).
	Name string
	// Value is the exception's message.
	Value string
	// Traceback is the formatted traceback (Python) or stack (Node).
	Traceback string
}

// String formats the exception as Python prints its last line.
func (e *CellError) String() string {
	if e.Value == "" {
		return e.Name
	}
	return e.Name + ": " + e.Value
}

// Execution is what a cell produced.
type Execution struct {
	// Results are the display outputs in the order they were produced.
	Results []Output
	// Stdout and Stderr are what the cell (and the processes it started)
	// printed, each capped at CellOptions.MaxOutput.
	Stdout, Stderr string
	// Error is set when the cell raised.
	Error *CellError
	// Truncated reports that output was dropped to stay under
	// CellOptions.MaxOutput (the writers and OnResult still saw it), or
	// that a single output was too large to carry at all.
	Truncated bool
}

// Main returns the value of the cell's last expression (the Output with
// IsMain), or nil when it had none.
func (e *Execution) Main() *Output {
	for i := range e.Results {
		if e.Results[i].IsMain {
			return &e.Results[i]
		}
	}
	return nil
}
