package modal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	modalsdk "github.com/modal-labs/modal-client/go"

	"github.com/computesdk-go/compute"
)

// Commands start through a small /bin/sh launcher, in the same exec (no
// extra call to Modal). Modal's exec has no "command not found" answer, no
// kill and no relative working directory; the launcher gives all three:
//
//   - it changes to the working directory (relative ones too), sends
//     stderr to stdout when the caller wants them in one stream, and gives
//     the command an empty stdin when it has none (which saves the call
//     that would close it);
//   - it looks the program up in PATH as execvp does, ignoring the shell's
//     builtins, and reports a missing one before anything runs;
//   - it writes a marker on stdout, its pid and working directory, then
//     execs the program in its own place (same pid, Modal's exit status
//     unchanged).
//
// Start returns when the marker (or the not-found report) has come, so a
// missing command is an error from Start and Kill knows the pid to kill.
// The marker is taken off stdout: the command's output is exactly its own.
//
// The arguments: the mode (n: no stdin, m: stderr into stdout, f: the
// argv is in a file, for argvs too long for one exec), the directory, then
// the argv.
const launcher = `m=$1 d=$2
shift 2
case $m in *m*) exec 2>&1 ;; esac
case $m in *f*) f=$1; . "$f" || exit 126; rm -f -- "$f" ;; esac
if [ -n "$d" ]; then cd -- "$d" || exit 1; fi
case $m in *n*) exec </dev/null ;; esac
case $1 in
*/*) [ -e "$1" ] ;;
*) (set -f; IFS=:; for p in $PATH; do [ -f "${p:-.}/$1" ] && [ -x "${p:-.}/$1" ] && exit 0; done; exit 1) ;;
esac || { printf '\036!\n'; exit 127; }
printf '\036%s %s\0' "$$" "$PWD"
exec "$@"`

// killer stops a process and everything it started: it freezes the
// process, then its descendants (found by parent pid in /proc) until no
// new ones appear, then kills them all. Frozen processes cannot fork, so
// none escapes by starting another while the tree is walked.
const killer = `w=$1
kill -STOP "$w" 2>/dev/null || exit 0
all=" $w " new=1
while [ -n "$new" ]; do
  new=
  for d in /proc/[0-9]*; do
    { read -r l < "$d/stat"; } 2>/dev/null || continue
    l=${l##*) }
    set -f; set -- $l; set +f
    case $all in *" $2 "*) ;; *) continue ;; esac
    p=${d#/proc/}
    case $all in *" $p "*) continue ;; esac
    kill -STOP "$p" 2>/dev/null
    all="$all$p " new=1
  done
done
kill -KILL $all 2>/dev/null
exit 0`

const (
	// maxArgBytes is how many bytes of arguments one exec carries; the
	// SDK refuses more than 65536, and the launcher takes some.
	maxArgBytes = 60 << 10
	// stdinChunk is the most stdin one write carries.
	stdinChunk = 4 << 20
	// killTimeout bounds a Kill.
	killTimeout = time.Minute
)

// Start runs a command in the sandbox (see the launcher above): one exec
// on Modal, whose stdout and stderr are read at once and concurrently.
func (s *Sandbox) Start(ctx context.Context, req *compute.ExecRequest) (compute.ProviderProcess, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, errors.New("modal: empty command")
	}
	if why := s.goneReason(); why != "" {
		return nil, stoppedError("exec", s.id, why, nil)
	}
	if err := checkEnv(req.Env); err != nil {
		return nil, err
	}
	stdout, stderr := orDiscard(req.Stdout), orDiscard(req.Stderr)
	merged := req.Stdout != nil && compute.SameWriter(req.Stdout, req.Stderr)
	mode := "-"
	if req.Stdin == nil {
		mode += "n"
	}
	if merged {
		mode += "m"
	}
	argv := append([]string{"/bin/sh", "-c", launcher, "sh", mode, req.Dir}, req.Argv...)
	if argBytes(argv) > maxArgBytes {
		file, err := s.uploadArgv(ctx, req.Argv)
		if err != nil {
			return nil, err
		}
		argv = []string{"/bin/sh", "-c", launcher, "sh", mode + "f", req.Dir, file}
	}
	params := &modalsdk.SandboxExecParams{Env: req.Env}
	if merged {
		params.Stderr = modalsdk.Ignore
	}
	cp, err := s.sb.Exec(ctx, argv, params)
	if err != nil {
		return nil, ctxErr(ctx, s.opErr(ctx, "exec", err))
	}
	p := s.newProcess(cp)
	p.setWorkdir = req.Dir == ""
	p.run(stdout, stderr, merged, req.Stdin)

	select {
	case <-p.started:
	case <-ctx.Done():
		// The command may be starting: kill it when it has, then stop
		// waiting for it.
		go func() {
			p.Kill()
			p.abandon(ctx.Err())
		}()
		return nil, ctx.Err()
	}
	if p.notFound {
		return nil, &Error{Op: "exec", Sandbox: s.id, Kind: compute.ErrCommandNotFound, Msg: fmt.Sprintf("%s: command not found", req.Argv[0])}
	}
	return p, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func argBytes(argv []string) int {
	n := 0
	for _, a := range argv {
		n += len(a)
	}
	return n
}

// uploadArgv writes an argv too long for one exec into a file the
// launcher sources (and removes): "set -- 'arg' ...", each argument
// single-quoted, which keeps every byte.
func (s *Sandbox) uploadArgv(ctx context.Context, argv []string) (string, error) {
	var b strings.Builder
	b.WriteString("set --")
	for _, a := range argv {
		b.WriteString(" '")
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteString("'")
	}
	b.WriteString("\n")
	var r [8]byte
	rand.Read(r[:])
	name := "/tmp/.computesdk-argv-" + hex.EncodeToString(r[:])
	if err := s.sb.Filesystem.WriteBytes(ctx, []byte(b.String()), name, nil); err != nil {
		return "", ctxErr(ctx, s.opErr(ctx, "exec", fmt.Errorf("writing the arguments to %s: %w", name, err)))
	}
	return name, nil
}

// process is a command started by Start.
type process struct {
	s  *Sandbox
	cp *modalsdk.ContainerProcess

	// ctx bounds the wait for the exit status; abandon cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	// started is closed when the launcher's marker has come (pid set),
	// when it reported the command missing (notFound), or when stdout
	// ended without either (the launcher failed before the command, for
	// example on a missing directory; the exit code says how).
	started     chan struct{}
	startOnce   sync.Once
	pid         string
	notFound    bool
	setWorkdir  bool // record the working directory the marker reports
	readersDone sync.WaitGroup

	done chan struct{}
	code int
	err  error

	mu        sync.Mutex
	readErr   error
	abandoned error
}

func (s *Sandbox) newProcess(cp *modalsdk.ContainerProcess) *process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{s: s, cp: cp, ctx: ctx, cancel: cancel, started: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	s.procs[p] = struct{}{}
	s.mu.Unlock()
	return p
}

// run starts the goroutines that move the process's streams and wait for
// its exit: all four calls to Modal are in flight at once.
func (p *process) run(stdout, stderr io.Writer, merged bool, stdin io.Reader) {
	p.readersDone.Add(1)
	go func() {
		defer p.readersDone.Done()
		p.setReadErr(p.readStdout(stdout))
	}()
	if !merged {
		p.readersDone.Add(1)
		go func() {
			defer p.readersDone.Done()
			_, err := io.Copy(writerIgnoringErrors{stderr}, p.cp.Stderr)
			p.setReadErr(err)
		}()
	}
	if stdin != nil {
		go p.writeStdin(stdin)
	}
	go p.wait()
}

func (p *process) setReadErr(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	if p.readErr == nil {
		p.readErr = err
	}
	p.mu.Unlock()
}

func (p *process) markStarted() { p.startOnce.Do(func() { close(p.started) }) }

// readStdout takes the launcher's marker off stdout, then copies the rest.
func (p *process) readStdout(w io.Writer) error {
	defer p.markStarted()
	w = writerIgnoringErrors{w}
	buf := make([]byte, 32<<10)
	var head []byte
	for {
		n, err := p.cp.Stdout.Read(buf)
		head = append(head, buf[:n]...)
		if len(head) > 0 && head[0] != '\x1e' {
			// The launcher failed before its marker, with stderr sent
			// here: all of it is output.
			w.Write(head)
			break
		}
		if bytes.HasPrefix(head, []byte("\x1e!\n")) {
			p.notFound = true
			break
		}
		if i := bytes.IndexByte(head, 0); i >= 0 {
			pid, wd, _ := strings.Cut(string(head[1:i]), " ")
			p.pid = pid
			if p.setWorkdir && strings.HasPrefix(wd, "/") {
				p.s.setWorkdir(wd)
			}
			p.markStarted()
			w.Write(head[i+1:])
			break
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	_, err := io.CopyBuffer(w, p.cp.Stdout, buf)
	return err
}

// writerIgnoringErrors keeps the output flowing when the caller's writer
// fails (package compute reports that failure itself).
type writerIgnoringErrors struct{ w io.Writer }

func (w writerIgnoringErrors) Write(b []byte) (int, error) {
	w.w.Write(b)
	return len(b), nil
}

// writeStdin feeds stdin to the process, then closes it. Writes the
// process no longer takes (it exited) are dropped.
func (p *process) writeStdin(r io.Reader) {
	buf := make([]byte, stdinChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			select {
			case <-p.done:
				return
			default:
			}
			if _, err := p.cp.Stdin.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			break
		}
	}
	select {
	case <-p.done:
	default:
		p.cp.Stdin.Close()
	}
}

// wait waits for the exit status and the end of the output.
func (p *process) wait() {
	code, err := p.cp.Wait(p.ctx, nil)
	if err != nil {
		// The output cannot end normally either: stop reading it.
		p.closeOutput()
	}
	p.readersDone.Wait()
	p.markStarted()
	p.mu.Lock()
	abandoned, readErr := p.abandoned, p.readErr
	p.mu.Unlock()
	switch {
	case abandoned != nil:
		code, err = 137, abandoned
	case err != nil:
		code, err = -1, p.s.opErr(context.Background(), "exec", err)
	case readErr != nil:
		err = p.s.opErr(context.Background(), "exec", fmt.Errorf("reading the command's output: %w", readErr))
	}
	p.code, p.err = code, err
	p.s.mu.Lock()
	delete(p.s.procs, p)
	p.s.mu.Unlock()
	p.cancel()
	close(p.done)
}

func (p *process) closeOutput() {
	p.cp.Stdout.Close()
	p.cp.Stderr.Close()
}

// abandon stops waiting for the process (its sandbox is gone, or Start
// was cancelled): Wait returns err.
func (p *process) abandon(err error) {
	p.mu.Lock()
	if p.abandoned == nil {
		p.abandoned = err
	}
	p.mu.Unlock()
	p.cancel()
	p.closeOutput()
}

// Wait waits for the command to exit and its output to be delivered.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Kill kills the command and every process it started, with one more
// exec (the killer above), and returns when that has run.
func (p *process) Kill() error {
	select {
	case <-p.done:
		return nil
	case <-p.started:
	case <-time.After(killTimeout):
		return &Error{Op: "kill", Sandbox: p.s.id, Msg: "the command did not start"}
	}
	if p.pid == "" {
		return nil // the launcher ended before the command started
	}
	ctx, cancel := context.WithTimeout(p.ctx, killTimeout)
	defer cancel()
	cp, err := p.s.sb.Exec(ctx, []string{"/bin/sh", "-c", killer, "kill", p.pid}, &modalsdk.SandboxExecParams{Stdout: modalsdk.Ignore, Stderr: modalsdk.Ignore})
	if err == nil {
		_, err = cp.Wait(ctx, nil)
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err != nil {
		if isGone(err) || p.ctx.Err() != nil {
			return nil // the sandbox, and so the command, is gone
		}
		return wrapErr("kill", p.s.id, err)
	}
	return nil
}
