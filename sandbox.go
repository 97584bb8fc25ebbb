package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute/driver"
)

// DefaultMaxOutput is how much of each of stdout and stderr a Result keeps
// (16 MiB). Output past it is dropped from the Result (and Result.Truncated
// set); writers given in RunOptions still receive all of it.
const DefaultMaxOutput = 16 << 20

// Sandbox is a running sandbox: what users hold. It is safe for
// concurrent use; several commands may run at once.
type Sandbox struct {
	provider Provider
	ps       driver.Sandbox
	runtime  Runtime // default for RunCode

	// contexts holds the code contexts package compute runs itself, shared
	// by every handle of this Compute on the sandbox.
	contexts *contextSet

	// fsys is the native filesystem when the provider has one.
	fsys driver.FileSystem
}

func newSandbox(set *contextSet, p Provider, ps driver.Sandbox, opts *CreateOptions) *Sandbox {
	s := &Sandbox{provider: p, ps: ps, contexts: set}
	if opts != nil {
		s.runtime = opts.Runtime
	}
	if f, ok := ps.(driver.FileSystemer); ok {
		s.fsys = f.FileSystem()
	}
	return s
}

// ID returns the sandbox's id.
func (s *Sandbox) ID() string { return s.ps.ID() }

// Provider returns the name of the provider running the sandbox.
func (s *Sandbox) Provider() string { return s.provider.Name() }

// Driver returns the provider's own sandbox value, for provider-specific
// features (like database/sql's Conn.Raw).
func (s *Sandbox) Driver() driver.Sandbox { return s.ps }

// Info describes the sandbox.
func (s *Sandbox) Info(ctx context.Context) (*Info, error) {
	info, err := s.ps.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Runtime == "" {
		info.Runtime = s.runtime
	}
	return info, nil
}

// URL returns the address that reaches port inside the sandbox, where the
// provider exposes ports (see driver.URLer); otherwise an error matching
// ErrUnsupported.
func (s *Sandbox) URL(ctx context.Context, port int) (string, error) {
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("compute: invalid port %d: %w", port, ErrInvalid)
	}
	u, ok := s.ps.(driver.URLer)
	if !ok {
		return "", fmt.Errorf("compute: %s sandboxes expose no ports: %w", s.Provider(), ErrUnsupported)
	}
	return u.URL(ctx, port)
}

// Snapshot saves the sandbox's filesystem and returns an id to create new
// sandboxes from, where the provider can (see driver.Snapshotter); otherwise an
// error matching ErrUnsupported.
func (s *Sandbox) Snapshot(ctx context.Context) (string, error) {
	sn, ok := s.ps.(driver.Snapshotter)
	if !ok {
		return "", fmt.Errorf("compute: %s sandboxes cannot be snapshotted: %w", s.Provider(), ErrUnsupported)
	}
	return sn.Snapshot(ctx)
}

// Destroy stops the sandbox and releases everything it holds. It is
// idempotent.
func (s *Sandbox) Destroy(ctx context.Context) error {
	err := s.provider.Destroy(ctx, s.ps.ID())
	s.contexts.drop(s.provider, s.ps.ID())
	return err
}

// Result is the outcome of a command or of RunCode.
type Result struct {
	// Stdout and Stderr are the captured output, each capped at
	// RunOptions.MaxOutput (DefaultMaxOutput).
	Stdout, Stderr string
	// ExitCode is the process's exit code: 127 when the command was not
	// found, 124 when it was killed by its timeout, 128+n when killed by
	// signal n.
	ExitCode int
	// Duration is the wall time from start to exit.
	Duration time.Duration
	// Truncated reports that some output was dropped from Stdout or Stderr.
	Truncated bool
	// Runtime is the runtime RunCode used; empty for commands.
	Runtime Runtime
}

// RunOptions are the per-command options. The zero value (or nil) runs the
// command in the sandbox's working directory with its environment, no
// input, no timeout beyond the sandbox's lifetime.
type RunOptions struct {
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string
	// Dir is the working directory; relative to the sandbox's default one.
	Dir string
	// Stdin is the command's input; nil means none. It is copied from its
	// own goroutine, which (as with os/exec) ends when a Read returns after
	// the command has exited.
	Stdin io.Reader
	// Timeout kills the command and all it started after this long; the
	// result then has exit code 124 and the error matches ErrTimeout.
	Timeout time.Duration
	// Stdout and Stderr, when set, receive the output as it is produced
	// (streaming), in addition to the Result.
	Stdout, Stderr io.Writer
	// MaxOutput caps each of Result.Stdout and Result.Stderr; 0 means
	// DefaultMaxOutput, negative keeps nothing (the writers still get it).
	MaxOutput int
}

// RunCommand runs a program with arguments (no shell) and waits for it. A
// non-zero exit is reported in Result.ExitCode, not as an error; errors are
// for timeouts, cancellation and failures of the sandbox. A command killed
// by RunOptions.Timeout or by ctx's deadline has exit code 124 and an
// error matching ErrTimeout (and, for the deadline, also
// context.DeadlineExceeded), with the partial Result; one killed because
// ctx was canceled has the code of its death (137) and an error matching
// context.Canceled.
func (s *Sandbox) RunCommand(ctx context.Context, name string, args ...string) (*Result, error) {
	return s.Run(ctx, append([]string{name}, args...), nil)
}

// RunShell runs a script with /bin/sh -c, for pipes, redirections and
// variables.
func (s *Sandbox) RunShell(ctx context.Context, script string, opts *RunOptions) (*Result, error) {
	return s.Run(ctx, []string{"/bin/sh", "-c", script}, opts)
}

// Run runs argv with options and waits for it. See RunCommand for how
// exits and errors are reported; Start runs a command without waiting.
func (s *Sandbox) Run(ctx context.Context, argv []string, opts *RunOptions) (*Result, error) {
	if opts == nil {
		opts = &RunOptions{}
	}
	p, err := s.start(ctx, argv, opts)
	if errors.Is(err, ErrCommandNotFound) {
		msg := fmt.Sprintf("%s: command not found\n", argv[0])
		if opts.Stderr != nil {
			io.WriteString(opts.Stderr, msg)
		}
		return &Result{Stderr: msg, ExitCode: ExitCodeNotFound}, nil
	}
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// Start starts argv and returns a handle at once, like exec.Cmd.Start. The
// command is killed when ctx is done: a command meant to outlive the
// caller's request is started with context.WithoutCancel(ctx). A command
// that cannot be found gives an error matching ErrCommandNotFound.
func (s *Sandbox) Start(ctx context.Context, argv []string, opts *RunOptions) (*Process, error) {
	if opts == nil {
		opts = &RunOptions{}
	}
	return s.start(ctx, argv, opts)
}

func (s *Sandbox) start(ctx context.Context, argv []string, opts *RunOptions) (*Process, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("compute: empty command: %w", ErrInvalid)
	}
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("compute: argument %q contains a NUL byte: %w", a, ErrInvalid)
		}
	}
	if err := driver.ValidateEnv(opts.Env); err != nil {
		return nil, err
	}
	if strings.ContainsRune(opts.Dir, 0) {
		return nil, fmt.Errorf("compute: working directory contains a NUL byte: %w", ErrInvalid)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("compute: negative timeout %v: %w", opts.Timeout, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	max := opts.MaxOutput
	switch {
	case max == 0:
		max = DefaultMaxOutput
	case max < 0:
		max = 0
	}
	p := &Process{
		stdout: &cappedBuffer{max: max},
		stderr: &cappedBuffer{max: max},
		done:   make(chan struct{}),
	}
	stdout, stderr := p.outputs(opts.Stdout, opts.Stderr)
	req := &driver.ExecRequest{Argv: argv, Env: opts.Env, Dir: opts.Dir, Stdin: opts.Stdin, Stdout: stdout, Stderr: stderr}
	p.start = time.Now()
	dp, err := s.ps.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	p.proc = dp
	if opts.Timeout > 0 {
		p.timer = time.AfterFunc(opts.Timeout, func() {
			p.timedOut.Store(true)
			p.proc.Kill()
		})
		p.timeout = opts.Timeout
	}
	go p.wait(ctx)
	return p, nil
}

// Process is a command running in a sandbox.
type Process struct {
	proc           driver.Process
	start          time.Time
	stdout, stderr *cappedBuffer
	userErr        error // first error writing to a caller's writer
	userErrMu      sync.Mutex
	timer          *time.Timer
	timeout        time.Duration
	timedOut       atomic.Bool

	done   chan struct{}
	result *Result
	err    error
}

// outputs returns the writers for the driver. When the caller wants both
// streams in one writer, the driver gets one writer for both (and so one
// pipe, which keeps their order) and Result.Stdout holds both.
func (p *Process) outputs(userOut, userErr io.Writer) (io.Writer, io.Writer) {
	tee := func(c *cappedBuffer, w io.Writer) io.Writer {
		if w == nil {
			return c
		}
		return &teeWriter{p: p, capture: c, user: w}
	}
	if userOut != nil && driver.SameWriter(userOut, userErr) {
		w := tee(p.stdout, userOut)
		return w, w
	}
	return tee(p.stdout, userOut), tee(p.stderr, userErr)
}

func (p *Process) wait(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { p.proc.Kill() })
	code, err := p.proc.Wait()
	stop()
	if p.timer != nil {
		p.timer.Stop()
	}
	res := &Result{
		Stdout:    p.stdout.String(),
		Stderr:    p.stderr.String(),
		ExitCode:  code,
		Duration:  time.Since(p.start),
		Truncated: p.stdout.truncated || p.stderr.truncated,
	}
	switch {
	case err != nil:
	case p.timedOut.Load():
		res.ExitCode = ExitCodeTimeout
		err = fmt.Errorf("compute: command ran past its %v timeout and was killed: %w", p.timeout, ErrTimeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		// A deadline is a timeout too: the same exit code and sentinel as
		// RunOptions.Timeout, and the context's error for errors.Is.
		res.ExitCode = ExitCodeTimeout
		err = fmt.Errorf("compute: command killed at its context's deadline: %w (%w)", ErrTimeout, ctx.Err())
	case ctx.Err() != nil:
		err = fmt.Errorf("compute: command killed because its context was canceled: %w", ctx.Err())
	default:
		p.userErrMu.Lock()
		err = p.userErr
		p.userErrMu.Unlock()
	}
	p.result, p.err = res, err
	close(p.done)
}

// Wait waits for the process to exit and returns its result. It may be
// called more than once and from several goroutines.
func (p *Process) Wait() (*Result, error) {
	<-p.done
	r := *p.result
	return &r, p.err
}

// Kill kills the process and every process it started.
func (p *Process) Kill() error { return p.proc.Kill() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// teeWriter captures output and forwards it to a caller's writer; a
// failing caller writer is remembered, not allowed to stop the capture.
type teeWriter struct {
	p       *Process
	capture *cappedBuffer
	user    io.Writer
	failed  bool
}

func (t *teeWriter) Write(b []byte) (int, error) {
	t.capture.Write(b)
	if t.failed {
		return len(b), nil
	}
	if _, err := t.user.Write(b); err != nil {
		t.failed = true
		t.p.userErrMu.Lock()
		if t.p.userErr == nil {
			t.p.userErr = fmt.Errorf("compute: writing command output: %w", err)
		}
		t.p.userErrMu.Unlock()
	}
	return len(b), nil
}

// cappedBuffer keeps the first max bytes written and counts the rest.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if len(b) > room {
		c.truncated = true
		if room > 0 {
			c.buf.Write(b[:room])
		}
		return len(b), nil
	}
	return c.buf.Write(b)
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
