package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Cmd is a command to run in a sandbox, shaped like os/exec.Cmd: fill the
// fields, then Run, or Start and Wait, or Output / CombinedOutput.
type Cmd struct {
	// Path is the program to run, looked up in the sandbox's PATH when it
	// has no slash.
	Path string
	// Args holds the command line, Args[0] included (as in os/exec).
	Args []string
	// Env holds "KEY=value" entries added to (and overriding) the
	// sandbox's environment; unlike os/exec, nil does not mean the host's.
	Env []string
	// Dir is the working directory; empty means the sandbox's default.
	Dir string
	// Stdin, Stdout and Stderr are the command's standard streams; nil
	// Stdin means no input, nil Stdout/Stderr discard the output.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Timeout, when positive, kills the command after this long; Wait then
	// returns an error matching ErrTimeout.
	Timeout time.Duration

	// Process is the running command, set by Start.
	Process *Process
	// Result is the finished command's result, set by Wait.
	Result *Result

	sb  *Sandbox
	ctx context.Context
}

// Command returns a Cmd that runs name with args in the sandbox.
func (s *Sandbox) Command(name string, arg ...string) *Cmd {
	return s.CommandContext(context.Background(), name, arg...)
}

// CommandContext is like Command but the command is killed (with all it
// started) when ctx is done.
func (s *Sandbox) CommandContext(ctx context.Context, name string, arg ...string) *Cmd {
	return &Cmd{Path: name, Args: append([]string{name}, arg...), sb: s, ctx: ctx}
}

// Start starts the command without waiting for it.
func (c *Cmd) Start() error {
	if c.Process != nil {
		return errors.New("compute: Cmd already started")
	}
	if c.sb == nil {
		return errors.New("compute: Cmd not created by Sandbox.Command")
	}
	argv := append([]string{c.Path}, c.Args[min(1, len(c.Args)):]...)
	env := make(map[string]string, len(c.Env))
	for _, kv := range c.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("compute: environment entry %q is not KEY=value: %w", kv, ErrInvalid)
		}
		env[k] = v
	}
	p, err := c.sb.Start(c.ctx, argv, &RunOptions{
		Env: env, Dir: c.Dir, Stdin: c.Stdin, Timeout: c.Timeout,
		Stdout: orDiscard(c.Stdout), Stderr: orDiscard(c.Stderr),
		MaxOutput: -1, // the caller's writers have the output; keep no copy
	})
	if err != nil {
		return err
	}
	c.Process = p
	return nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Wait waits for a started command. A non-zero exit gives an *ExitError.
func (c *Cmd) Wait() error {
	if c.Process == nil {
		return errors.New("compute: Cmd not started")
	}
	if c.Result != nil {
		return errors.New("compute: Wait was already called")
	}
	res, err := c.Process.Wait()
	res.Truncated = false // nothing was kept on purpose
	c.Result = res
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return &ExitError{ExitCode: res.ExitCode}
	}
	return nil
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output. On a non-zero
// exit the *ExitError holds the standard error, unless Stderr was set.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("compute: Stdout already set")
	}
	var out bytes.Buffer
	c.Stdout = &out
	var errb *bytes.Buffer
	if c.Stderr == nil {
		errb = &bytes.Buffer{}
		c.Stderr = errb
	}
	err := c.Run()
	var ee *ExitError
	if errb != nil && errors.As(err, &ee) {
		ee.Stderr = errb.Bytes()
	}
	return out.Bytes(), err
}

// CombinedOutput runs the command and returns stdout and stderr
// interleaved as they were written.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("compute: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

// String returns the command line, for logs.
func (c *Cmd) String() string { return strings.Join(c.Args, " ") }
