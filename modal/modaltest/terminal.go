package modaltest

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
)

// startTerminal runs a command whose exec (or sandbox definition) carries
// an enabled pty_info on a real pseudo-terminal of the provider's sandbox
// (compute.Sandbox.Terminal): of pty_info's size, with its TERM, COLORTERM
// and TERM_PROGRAM (the command's own environment overrides them). The
// terminal's output is the process's stdout; its stdin is typed on the
// terminal. Closing stdin types nothing: the program reads on (a
// terminal's input ends only with a typed Ctrl-D).
//
// On a provider without terminals it returns (nil, nil), and the caller
// runs the command on pipes, with stderr sent to stdout.
func (sb *sandbox) startTerminal(p *process, cs *compute.Sandbox, spec execSpec, out io.Writer) (*process, error) {
	info := spec.pty
	env := map[string]string{}
	for k, v := range map[string]string{"TERM": info.GetEnvTerm(), "COLORTERM": info.GetEnvColorterm(), "TERM_PROGRAM": info.GetEnvTermProgram()} {
		if v != "" {
			env[k] = v
		}
	}
	for k, v := range spec.env {
		env[k] = v
	}
	term, err := cs.Terminal(sb.ctx, &compute.TerminalOptions{
		Argv: spec.argv, Env: env, Dir: spec.dir,
		Rows: termSize(info.GetWinszRows()), Cols: termSize(info.GetWinszCols()),
	})
	if errors.Is(err, compute.ErrUnsupported) {
		sb.s.terminalsOnce.Do(func() {
			sb.s.log.Warn("the provider has no terminals: PTY execs run on pipes, with stderr sent to stdout", "provider", cs.Provider(), "error", err)
		})
		return nil, nil
	}
	if err != nil {
		if !sb.running() || errors.Is(err, compute.ErrStopped) {
			return nil, status.Errorf(codes.NotFound, "Sandbox %s has finished", sb.id)
		}
		code := 126
		msg := err.Error()
		if errors.Is(err, compute.ErrCommandNotFound) {
			code = 127
			msg = fmt.Sprintf("exec: %q: executable file not found in $PATH", spec.argv[0])
		}
		fmt.Fprintf(out, "%s\r\n", msg)
		p.exit(code)
		return p, nil
	}
	if !spec.entrypoint {
		sb.hold()
	}
	// The terminal outlives the call that started it; the end of the
	// sandbox (finish destroys the provider's sandbox) ends it.
	var (
		timer    *time.Timer
		timedOut atomic.Bool
	)
	if spec.timeout > 0 {
		timer = time.AfterFunc(spec.timeout, func() {
			timedOut.Store(true)
			term.Close()
		})
	}
	copied := make(chan struct{})
	sb.s.goBackground(func() {
		defer close(copied)
		io.Copy(out, term)
	})
	sb.s.goBackground(func() {
		// Keystrokes until stdin ends: closed by the client, or dropped
		// when the process exits (Close then ends a pending Write).
		buf := make([]byte, 32<<10)
		for {
			n, err := p.stdin.Read(buf)
			if n > 0 {
				if _, werr := term.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	sb.s.goBackground(func() {
		code, err := term.Wait()
		<-copied
		if timer != nil {
			timer.Stop()
		}
		term.Close()
		if err != nil || timedOut.Load() {
			// The sandbox went away under it, or Modal's exec timeout (a
			// SIGKILL) ended it.
			code = 137
		}
		if !spec.entrypoint {
			sb.release()
		}
		p.exit(code)
	})
	return p, nil
}

// termSize is a pty_info dimension as compute takes it: 0 for the
// default, at most compute.MaxTerminalSize.
func termSize(n uint32) int {
	return int(min(n, compute.MaxTerminalSize))
}
