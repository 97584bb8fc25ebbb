package compute

import (
	"context"
	"fmt"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// The code interpreter's values, defined in package driver so that
// providers with contexts of their own (package remote) share them.
type (
	// CodeContextOptions configures a new code context; the zero value
	// (or nil) is a context of the sandbox's runtime (Python when it has
	// none) in its working directory.
	CodeContextOptions = driver.CodeContextOptions
	// CodeContextInfo describes a code context.
	CodeContextInfo = driver.CodeContextInfo
	// CellOptions are the options of one cell; the zero value (or nil) is
	// valid.
	CellOptions = driver.CellOptions
	// Output is one display output of a cell: a MIME bundle, such as a
	// chart's PNG or a DataFrame's HTML and text.
	Output = driver.Output
	// CellError is an exception a cell raised: part of the Execution, not
	// a Go error.
	CellError = driver.CellError
	// Execution is what a cell produced.
	Execution = driver.Execution
)

// CodeContext is a stateful interpreter in a sandbox, as a Jupyter kernel
// is: variables, imports and functions defined by one cell are there for
// the next. Two contexts of one sandbox share its filesystem but not their
// variables. A CodeContext is safe for concurrent use; its cells run one
// at a time, in the order their Run calls arrive.
//
// Python contexts use IPython's InteractiveShell where the sandbox has
// IPython (rich display, matplotlib charts as PNG, pandas tables as HTML,
// magics and !commands) and the standard library alone otherwise; Info
// says which. Node contexts evaluate cells in one persistent V8 context,
// as Node's REPL does: let and const survive, top-level await works.
type CodeContext struct {
	dc driver.CodeContext
}

// NewCodeContext starts a code context in the sandbox and waits until its
// interpreter is ready for cells; ctx bounds only that start. opts may be
// nil.
//
// On every provider the context is an interpreter process started in the
// sandbox like any command (same confinement, same limits); what it
// prints and displays travels to the host on a private channel that the
// cell's code cannot write to, so a cell may print anything, close its
// standard streams or start processes without breaking or forging
// results. A provider may keep contexts itself instead (a remote server
// does); the behaviour is the same.
func (s *Sandbox) NewCodeContext(ctx context.Context, opts *CodeContextOptions) (*CodeContext, error) {
	o := CodeContextOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Runtime == "" {
		o.Runtime = s.runtime
	}
	if o.Runtime == "" {
		o.Runtime = Python
	}
	if o.Runtime != Python && o.Runtime != Node {
		return nil, fmt.Errorf("compute: unknown runtime %q for a code context (want %q or %q): %w", o.Runtime, Python, Node, ErrInvalid)
	}
	if err := driver.ValidateEnv(o.Env); err != nil {
		return nil, err
	}
	if strings.ContainsRune(o.Dir, 0) {
		return nil, fmt.Errorf("compute: working directory contains a NUL byte: %w", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cc, ok := s.ps.(driver.CodeContexter); ok {
		dc, err := cc.NewCodeContext(ctx, &o)
		if err != nil {
			return nil, err
		}
		return &CodeContext{dc: dc}, nil
	}
	dc, err := s.contexts.start(ctx, s, &o)
	if err != nil {
		return nil, err
	}
	return &CodeContext{dc: dc}, nil
}

// CodeContexts returns the sandbox's live code contexts, oldest first:
// those this program started through any handle of this Compute on the
// sandbox, or, for a provider that keeps contexts itself (a remote
// server), every context the server holds for it.
func (s *Sandbox) CodeContexts(ctx context.Context) ([]*CodeContext, error) {
	if cc, ok := s.ps.(driver.CodeContexter); ok {
		list, err := cc.CodeContexts(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]*CodeContext, len(list))
		for i, dc := range list {
			out[i] = &CodeContext{dc: dc}
		}
		return out, nil
	}
	var out []*CodeContext
	for _, dc := range s.contexts.list(s.provider, s.ps.ID()) {
		out = append(out, &CodeContext{dc: dc})
	}
	return out, nil
}

// ID returns the context's id, unique within its sandbox.
func (c *CodeContext) ID() string { return c.dc.Info().ID }

// Info describes the context: its runtime, the interpreter's version and
// whether Python has IPython's rich display (Rich).
func (c *CodeContext) Info() CodeContextInfo { return c.dc.Info() }

// Driver returns the provider's own context value, for provider-specific
// features.
func (c *CodeContext) Driver() driver.CodeContext { return c.dc }

// Run runs one cell of code and returns what it produced. opts may be nil.
//
// What the cell prints reaches opts.Stdout and opts.Stderr, and each
// display output opts.OnResult, as it is produced; the Execution holds all
// of it in order, and the value of the cell's last expression is the
// Result with IsMain.
//
// An exception in the code (a syntax error included) is Execution.Error,
// with a nil Go error: the cell ran. A Go error means the cell could not
// run or finish: ctx done or opts.Timeout passed (the cell is interrupted,
// as Ctrl-C would, and the context keeps its state; the error matches
// ErrTimeout for the timeout and ctx.Err() otherwise, and the partial
// Execution comes with it), or the interpreter is gone (ErrContextDied:
// Restart it) or the sandbox is.
func (c *CodeContext) Run(ctx context.Context, code string, opts *CellOptions) (*Execution, error) {
	o := CellOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("compute: negative cell timeout %v: %w", o.Timeout, ErrInvalid)
	}
	if strings.ContainsRune(code, 0) {
		return nil, fmt.Errorf("compute: code contains a NUL byte: %w", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.dc.Run(ctx, code, &o)
}

// Restart replaces the context's interpreter with a fresh one, with the
// same id and options: every variable is lost. It is how a context whose
// interpreter died (ErrContextDied) is used again.
func (c *CodeContext) Restart(ctx context.Context) error { return c.dc.Restart(ctx) }

// Close stops the context's interpreter and removes the context; a cell
// running in it ends with an error. Closing a closed context returns nil.
func (c *CodeContext) Close(ctx context.Context) error { return c.dc.Close(ctx) }
