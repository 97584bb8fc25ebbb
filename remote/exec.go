package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

// inlineStdin is the most input sent inside the exec request itself, when
// its size is known up front (bytes.Reader, strings.Reader, bytes.Buffer);
// other input is streamed in a request of its own as it is read.
const inlineStdin = 64 << 10

// killTimeout bounds the request that kills a process.
const killTimeout = 30 * time.Second

// Start runs a command in the sandbox and returns once the server has
// started it. Its output is written to req.Stdout and req.Stderr as the
// server streams it. ctx bounds only the start.
func (s *Sandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body := wire.ExecRequest{Argv: req.Argv, Env: req.Env, Dir: req.Dir}
	stdout, stderr := orDiscard(req.Stdout), orDiscard(req.Stderr)
	if driver.SameWriter(stdout, stderr) {
		// One writer for both: the server keeps their order with one pipe.
		body.CombineOutput = true
	}
	var stdin io.Reader
	if req.Stdin != nil {
		if data, ok := smallInput(req.Stdin); ok {
			body.Stdin = data
		} else {
			body.StdinStream = true
			stdin = req.Stdin
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	// The stream outlives ctx: it is the process's lifeline, and ending it
	// kills the process.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (driver.Process, error) {
		stop()
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("remote: exec in sandbox %s: %w", s.id, err)
	}
	hreq, err := s.p.request(streamCtx, http.MethodPost, sandboxPath(s.id)+"/exec", nil, bytes.NewReader(b))
	if err != nil {
		return fail(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/x-ndjson")
	resp, err := s.p.do(hreq)
	if err != nil {
		return fail(err)
	}
	dec := json.NewDecoder(resp.Body)
	var ev wire.Event
	if err := dec.Decode(&ev); err != nil || ev.Type != wire.EventStart {
		resp.Body.Close()
		if err == nil {
			err = fmt.Errorf("the stream began with a %q event, want %q", ev.Type, wire.EventStart)
		}
		return fail(err)
	}
	if !stop() {
		// ctx ended while the command started: it is being killed.
		resp.Body.Close()
		cancel()
		return nil, ctx.Err()
	}
	p := &process{s: s, pid: ev.PID, body: resp.Body, ctx: streamCtx, cancel: cancel, done: make(chan struct{})}
	go p.read(dec, stdout, stderr)
	if stdin != nil {
		go p.sendStdin(stdin)
	}
	return p, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// smallInput returns the whole input when its size is known and small.
func smallInput(r io.Reader) ([]byte, bool) {
	switch r := r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		if r.(interface{ Len() int }).Len() > inlineStdin {
			return nil, false
		}
		data, err := io.ReadAll(r)
		return data, err == nil
	}
	return nil, false
}

// process is a command running on the server, seen through its stream.
type process struct {
	s      *Sandbox
	pid    int64
	body   io.ReadCloser
	ctx    context.Context // the stream's: done when it is over
	cancel context.CancelFunc
	killed atomic.Bool // Kill dropped the stream

	done chan struct{}
	code int
	err  error
}

var _ driver.Process = (*process)(nil)

// read delivers the stream's output until the exit event.
func (p *process) read(dec *json.Decoder, stdout, stderr io.Writer) {
	defer close(p.done)
	defer p.cancel()
	defer p.body.Close()
	for {
		var ev wire.Event
		if err := dec.Decode(&ev); err != nil {
			p.code = -1
			switch {
			case p.killed.Load():
				p.code = 128 + 9 // SIGKILL: what Kill asked for
			case err == io.EOF:
				p.err = fmt.Errorf("remote: sandbox %s: the server ended the stream of process %d before it exited", p.s.id, p.pid)
			default:
				p.err = fmt.Errorf("remote: sandbox %s: lost the stream of process %d: %w", p.s.id, p.pid, err)
			}
			return
		}
		switch ev.Type {
		case wire.EventStdout:
			stdout.Write(ev.Data)
		case wire.EventStderr:
			stderr.Write(ev.Data)
		case wire.EventExit:
			p.code = -1
			if ev.ExitCode != nil {
				p.code = *ev.ExitCode
			}
			if ev.Code != "" {
				// The exit has a reason (out of memory): keep both.
				p.err = fmt.Errorf("remote: sandbox %s: process %d: %w", p.s.id, p.pid, newError(0, wire.ErrorResponse{Error: ev.Error, Code: ev.Code}))
			}
			io.Copy(io.Discard, p.body) // the end of the response: reuse the connection
			return
		case wire.EventError:
			p.code = -1
			p.err = fmt.Errorf("remote: sandbox %s: process %d: %w", p.s.id, p.pid, newError(0, wire.ErrorResponse{Error: ev.Error, Code: ev.Code}))
			return
		}
		// Other types (ping, and any later ones) carry nothing for us.
	}
}

// sendStdin streams the input to the server until it ends or the process
// exits.
func (p *process) sendStdin(r io.Reader) {
	req, err := p.s.p.request(p.ctx, http.MethodPost, p.path("stdin"), nil, io.NopCloser(r))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.s.p.client.Do(req)
	if err != nil {
		return // the process exited, or the stream is gone (it is killed)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func (p *process) path(op string) string {
	return sandboxPath(p.s.id) + "/processes/" + strconv.FormatInt(p.pid, 10) + "/" + op
}

// Wait waits for the exit event and returns the exit code.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Kill asks the server to kill the process (and all it started). When the
// server cannot be reached, it drops the stream instead, which makes the
// server kill the process.
func (p *process) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	err := p.s.p.call(ctx, http.MethodPost, p.path("kill"), nil, nil, nil)
	var re *Error
	if err == nil || errors.As(err, &re) && (re.Code == wire.CodeProcessNotFound || re.Code == wire.CodeSandboxNotFound) {
		return nil // killed, or already gone
	}
	p.killed.Store(true)
	p.cancel()
	return nil
}
