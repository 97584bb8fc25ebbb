package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/internal/cellout"
	"github.com/computesdk-go/compute/server/wire"
)

// The server keeps code contexts itself (POST .../contexts, and a cell's
// NDJSON stream from .../contexts/{ctx}/run): package compute uses them
// through driver.CodeContexter instead of starting an interpreter over
// an exec stream, so a context lives as long as its sandbox on the
// server, whichever client made it, and every client of the sandbox sees
// it.

var _ driver.CodeContexter = (*Sandbox)(nil)

// defaultMaxOutput is driver.CellOptions.MaxOutput's default, 16 MiB.
const defaultMaxOutput = 16 << 20

// NewCodeContext starts a code context on the server.
func (s *Sandbox) NewCodeContext(ctx context.Context, opts *driver.CodeContextOptions) (driver.CodeContext, error) {
	req := wire.CreateContextRequest{Runtime: string(opts.Runtime), Dir: opts.Dir, Env: opts.Env}
	var info wire.ContextInfo
	if err := s.p.call(ctx, http.MethodPost, sandboxPath(s.id)+"/contexts", nil, req, &info); err != nil {
		return nil, fmt.Errorf("remote: new code context in sandbox %s: %w", s.id, err)
	}
	return &CodeContext{s: s, id: info.ID, info: info.Driver()}, nil
}

// CodeContexts lists the sandbox's code contexts on the server, oldest
// first.
func (s *Sandbox) CodeContexts(ctx context.Context) ([]driver.CodeContext, error) {
	var list wire.ContextList
	if err := s.p.call(ctx, http.MethodGet, sandboxPath(s.id)+"/contexts", nil, nil, &list); err != nil {
		return nil, fmt.Errorf("remote: code contexts of sandbox %s: %w", s.id, err)
	}
	out := make([]driver.CodeContext, len(list.Contexts))
	for i := range list.Contexts {
		out[i] = &CodeContext{s: s, id: list.Contexts[i].ID, info: list.Contexts[i].Driver()}
	}
	return out, nil
}

// CodeContext is a code context on a compute server: what the compute
// package's CodeContext.Driver returns for this provider.
type CodeContext struct {
	s    *Sandbox
	id   string
	mu   sync.Mutex
	info driver.CodeContextInfo
}

var _ driver.CodeContext = (*CodeContext)(nil)

// Info describes the context as the server last did (at its creation,
// listing or last Restart).
func (c *CodeContext) Info() driver.CodeContextInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

func (c *CodeContext) path(op string) string {
	return sandboxPath(c.s.id) + "/contexts/" + url.PathEscape(c.id) + op
}

// Restart replaces the context's interpreter on the server.
func (c *CodeContext) Restart(ctx context.Context) error {
	var info wire.ContextInfo
	if err := c.s.p.call(ctx, http.MethodPost, c.path("/restart"), nil, nil, &info); err != nil {
		return fmt.Errorf("remote: restart code context %s: %w", c.id, err)
	}
	c.mu.Lock()
	c.info = info.Driver()
	c.mu.Unlock()
	return nil
}

// Close closes the context on the server; closing a context that is not
// there (closed, or its sandbox destroyed) returns nil.
func (c *CodeContext) Close(ctx context.Context) error {
	err := c.s.p.call(ctx, http.MethodDelete, c.path(""), nil, nil, nil)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("remote: close code context %s: %w", c.id, err)
	}
	return nil
}

// Run runs a cell on the server, delivering its output to opts' writers
// and OnResult as the server streams it. Ending ctx closes the request,
// which interrupts the cell on the server; the context keeps its state.
func (c *CodeContext) Run(ctx context.Context, code string, opts *driver.CellOptions) (*driver.Execution, error) {
	b, err := json.Marshal(wire.RunCellRequest{Code: code, Timeout: millis(opts.Timeout)})
	if err != nil {
		return nil, err
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("remote: code context %s: %w", c.id, err)
	}
	req, err := c.s.p.request(ctx, http.MethodPost, c.path("/run"), nil, bytes.NewReader(b))
	if err != nil {
		return nil, fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.s.p.do(req)
	if err != nil {
		return nil, fail(err)
	}
	defer resp.Body.Close()

	limit := opts.MaxOutput
	if limit == 0 {
		limit = defaultMaxOutput
	}
	col := cellout.New(limit, opts.Stdout, opts.Stderr, opts.OnResult)
	dec := json.NewDecoder(resp.Body)
	for {
		var ev wire.CellEvent
		if err := dec.Decode(&ev); err != nil {
			if err == io.EOF {
				err = errors.New("the server ended the cell's stream before the cell ended")
			} else {
				err = fmt.Errorf("lost the cell's stream: %w", err)
			}
			return col.Execution(), fail(err)
		}
		switch ev.Type {
		case wire.CellEventStdout:
			col.Stdout(ev.Data)
		case wire.CellEventStderr:
			col.Stderr(ev.Data)
		case wire.CellEventResult:
			col.Result(ev.Bundle.Output(ev.Main))
		case wire.CellEventError:
			col.Error(&driver.CellError{Name: ev.Name, Value: ev.Value, Traceback: ev.Traceback})
		case wire.CellEventEnd:
			if ev.Truncated {
				col.Truncated()
			}
			io.Copy(io.Discard, resp.Body) // the end of the response: reuse the connection
			return col.Execution(), nil
		case wire.CellEventFailure:
			return col.Execution(), fail(newError(0, wire.ErrorResponse{Error: ev.Error, Code: ev.Code}))
		}
		// Other types (ping, and any later ones) carry nothing for us.
	}
}
