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
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
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
// none escapes by starting another while the tree is walked. It prints
// "killed", or "gone" when the process had already ended: the kill is
// confirmed by that output, not by the killer's exit status, so that a
// kill is known to have happened even when Modal stops reporting exit
// statuses.
const killer = `w=$1
kill -STOP "$w" 2>/dev/null || { echo gone; exit 0; }
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
echo killed`

// checker prints "alive" while a process runs, "gone" once it has exited
// (a zombie counts as gone: it runs nothing).
const checker = `{ read -r l < "/proc/$1/stat"; } 2>/dev/null || { echo gone; exit 0; }
l=${l##*) }
case $l in Z*|X*|x*) echo gone ;; *) echo alive ;; esac`

const (
	// maxArgBytes is how many bytes of arguments one exec carries; the
	// SDK refuses more than 65536, and the launcher takes some.
	maxArgBytes = 60 << 10
	// stdinChunk is the most stdin one write carries.
	stdinChunk = 4 << 20
)

// KillGrace bounds how long a command's Wait goes on once the command is
// being killed: by Kill, by its RunOptions.Timeout or by the end of its
// context (package compute kills it then). The kill is one more exec on
// Modal, confirmed by what that exec prints; the killed command's exit
// status and the rest of its output must come within the same KillGrace,
// counted from the kill. So a command returns at most KillGrace after its
// deadline, whatever Modal does:
//
//   - a confirmed kill whose exit status Modal does not report is reported
//     as killed (exit code 137, as a SIGKILL), with a warning in the log;
//   - a kill Modal refuses or does not confirm in time makes Wait return
//     at once with an error that says so (the command may still be running
//     in the sandbox; destroying the sandbox ends it). Such an error matches
//     the context's error when the context's end caused the kill.
const KillGrace = 10 * time.Second

const (
	// killedStatusGrace is how long the exit status of a command whose kill
	// was confirmed may take once its output has ended (within KillGrace);
	// past it the command is reported killed without Modal's word.
	killedStatusGrace = 2 * time.Second
	// statusGrace is how long a command's exit status may take once its
	// output has ended before the provider checks, with one small exec
	// (checker), whether the command still runs; probeInterval is the time
	// between later checks, while it does. A command that has exited but
	// whose exit status Modal does not report, or a check Modal does not
	// answer, ends the wait with an error that says so.
	statusGrace   = 10 * time.Second
	probeInterval = 30 * time.Second
	// probeTimeout bounds one such check, and the lookups made on error
	// paths (why a sandbox ended).
	probeTimeout = 10 * time.Second
)

// Start runs a command in the sandbox (see the launcher above): one exec
// on Modal, whose stdout and stderr are read at once and concurrently.
func (s *Sandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
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
	merged := req.Stdout != nil && driver.SameWriter(req.Stdout, req.Stderr)
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
	p := s.newProcess(ctx, cp)
	p.setWorkdir = req.Dir == ""
	p.run(stdout, stderr, merged, req.Stdin)

	select {
	case <-p.started:
	case <-ctx.Done():
		// The command may be starting: kill it when it has, then stop
		// waiting for it.
		go func() {
			if err := p.Kill(); err != nil {
				// Nobody is left to receive this error but the log.
				s.s.log.Warn("a command whose start was cancelled could not be killed", "sandbox", s.id, "error", err)
			}
			p.abandon(ctx.Err())
		}()
		return nil, ctx.Err()
	}
	if p.notFound {
		return nil, &Error{Op: "exec", Sandbox: s.id, Kind: driver.ErrCommandNotFound, Msg: fmt.Sprintf("%s: command not found", req.Argv[0])}
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
	fsys := &filesystem{s: s}
	if err := fsys.do(ctx, func(ctx context.Context) error { return s.sb.Filesystem.WriteBytes(ctx, []byte(b.String()), name, nil) }); err != nil {
		return "", ctxErr(ctx, s.opErr(ctx, "exec", fmt.Errorf("writing the arguments to %s: %w", name, err)))
	}
	return name, nil
}

// process is a command started by Start.
//
// Its outcome is decided once: by the exit status (wait), or earlier by
// end, when waiting longer would be waiting on something that will not
// come (the sandbox was destroyed, a kill failed, Modal stopped
// answering). Either way Wait returns only after the output readers have
// stopped, so that nothing is written to the caller's writers after it.
type process struct {
	s  *Sandbox
	cp *modalsdk.ContainerProcess
	// startCtx is Start's context. Package compute kills the command when
	// it ends; a kill that then fails reports its error.
	startCtx context.Context

	// ctx bounds the wait for the exit status; end cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	// started is closed when the launcher's marker has come (pid set),
	// when it reported the command missing (notFound), or when stdout
	// ended without either (the launcher failed before the command, for
	// example on a missing directory; the exit code says how; or reading
	// stdout failed: pidLost).
	started    chan struct{}
	startOnce  sync.Once
	pid        string
	notFound   bool
	pidLost    bool
	setWorkdir bool // record the working directory the marker reports

	readersDone sync.WaitGroup
	// outputDone is closed when both output readers have returned.
	outputDone chan struct{}

	// killing is set by the first Kill; killDone is closed when that kill
	// is confirmed or has failed (killErr).
	killing  atomic.Bool
	killOnce sync.Once
	killDone chan struct{}
	killErr  error

	done chan struct{}
	code int
	err  error

	mu sync.Mutex
	// readErr is the first failure reading the output (not counting those
	// end caused by closing it).
	readErr error
	// exited says the exit status has come: it is the outcome.
	exited bool
	// ended says end decided the outcome (endCode and endErr) unless the
	// exit status came; cut, that it closed the output before the output
	// ended.
	ended   bool
	endCode int
	endErr  error
	cut     bool
}

func (s *Sandbox) newProcess(startCtx context.Context, cp *modalsdk.ContainerProcess) *process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{
		s: s, cp: cp, startCtx: startCtx, ctx: ctx, cancel: cancel,
		started: make(chan struct{}), outputDone: make(chan struct{}),
		killDone: make(chan struct{}), done: make(chan struct{}),
	}
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
		p.outputFailed(p.readStdout(stdout))
	}()
	if !merged {
		p.readersDone.Add(1)
		go func() {
			defer p.readersDone.Done()
			_, err := io.Copy(writerIgnoringErrors{stderr}, p.cp.Stderr)
			p.outputFailed(err)
		}()
	}
	go func() {
		p.readersDone.Wait()
		close(p.outputDone)
	}()
	if stdin != nil {
		go p.writeStdin(stdin)
	}
	go p.wait()
	go p.watchStatus()
}

// outputFailed records a failure to read the output. The output is part
// of the command's result: a command whose output can no longer be read
// is killed, as a pipe's writer is when its reader goes away (SIGPIPE),
// rather than left running unseen.
func (p *process) outputFailed(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return // end closed the output
	}
	if p.readErr == nil {
		p.readErr = err
	}
	p.mu.Unlock()
	go p.Kill()
}

func (p *process) readError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readErr
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
		// (On a terminal the launcher's newline arrives as CR LF.)
		if bytes.HasPrefix(head, []byte("\x1e!\n")) || bytes.HasPrefix(head, []byte("\x1e!\r\n")) {
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
			p.pidLost = true
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
// process no longer takes (it exited) are dropped. The SDK makes these
// calls on a context of its own: a write to a Modal that stopped
// answering ends when the SDK gives up on it or the connection closes,
// not with Wait (which does not wait for it).
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

// wait waits for the exit status and the end of the output, and decides
// the outcome (unless end did).
func (p *process) wait() {
	code, err := p.cp.Wait(p.ctx, nil)
	if err == nil {
		p.mu.Lock()
		p.exited = true
		p.mu.Unlock()
	} else if p.ctx.Err() == nil {
		// The output cannot end normally either: stop reading it. During
		// a kill (bounded by KillGrace) Modal is not asked why a sandbox
		// that is gone ended.
		if isGone(err) && p.killing.Load() {
			err = stoppedError("exec", p.s.id, p.s.goneReason(), err)
		} else {
			err = p.s.opErr(context.Background(), "exec", err)
		}
		p.end(-1, err)
	}
	p.readersDone.Wait()
	p.markStarted()
	p.mu.Lock()
	exited, ended, cut, readErr, endErr := p.exited, p.ended, p.cut, p.readErr, p.endErr
	if ended && !exited {
		code, err = p.endCode, endErr
	}
	p.mu.Unlock()
	switch {
	case err != nil:
	case exited && cut && endErr != nil:
		// The status came, but end had already cut the output short, for
		// a reason it gave (the sandbox was destroyed, a kill's grace ran
		// out...): that reason is why the output may be incomplete.
		err = endErr
	case exited && cut:
		// The status came, but end had already cut the output short.
		err = &Error{Op: "exec", Sandbox: p.s.id, Msg: "the command exited, but Modal stopped delivering its output: it may be incomplete"}
	case readErr != nil && ended:
		// Bounded by a kill: no lookup of why the sandbox ended.
		err = wrapErr("exec", p.s.id, fmt.Errorf("reading the command's output: %w", readErr))
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

// end decides the outcome without the exit status (the first call wins;
// an exit status that has come wins over it) and stops the calls waiting
// for it: the status wait and the output readers, which wait then waits
// for.
func (p *process) end(code int, err error) {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	p.ended, p.endCode, p.endErr = true, code, err
	select {
	case <-p.outputDone:
	default:
		p.cut = true
	}
	p.mu.Unlock()
	p.cancel()
	p.cp.Stdout.Close()
	p.cp.Stderr.Close()
}

// abandon stops waiting for the process: its sandbox is gone, or Start
// was cancelled. Wait returns err.
func (p *process) abandon(err error) { p.end(137, err) }

// Wait waits for the command to exit and its output to be delivered.
func (p *process) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Kill kills the command and every process it started, with one more
// exec (the killer above), and returns when the kill is confirmed or has
// failed, at most KillGrace later. After a confirmed kill, Wait returns
// within KillGrace of the kill (see KillGrace); after a failed one, at
// once, with the error Kill returns. Only the first call kills; the others
// wait for its outcome.
func (p *process) Kill() error {
	p.killing.Store(true)
	p.killOnce.Do(func() { go p.kill() })
	select {
	case <-p.killDone:
		return p.killErr
	case <-p.done:
		return nil
	}
}

// kill runs the first Kill: it ends with killed, or with killFailed.
func (p *process) kill() {
	deadline := time.Now().Add(KillGrace)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	select {
	case <-p.done:
		p.killed(deadline, 137)
		return
	case <-p.started:
	case <-ctx.Done():
		p.killFailed(fmt.Errorf("the command had not reported its start after %v", KillGrace))
		return
	}
	if p.pid == "" {
		if p.pidLost {
			p.killFailed(errors.New("its output was lost before it reported its process id"))
			return
		}
		// The launcher ended before the command started: there is
		// nothing to kill, and its exit status follows.
		p.killed(deadline, -1)
		return
	}
	out, err := p.s.runScript(ctx, killer, p.pid)
	switch out = strings.TrimSpace(out); {
	case err != nil && isGone(err):
		// The sandbox, and so the command, is gone: the wait says so.
	case err != nil && ctx.Err() != nil:
		p.killFailed(fmt.Errorf("no answer from Modal within %v (%w)", KillGrace, err))
		return
	case err != nil:
		p.killFailed(err)
		return
	case out != "killed" && out != "gone":
		p.killFailed(fmt.Errorf("the kill printed %q", out))
		return
	}
	p.killed(deadline, 137)
}

// killed completes a confirmed kill (or one with nothing to kill): Kill
// returns nil, and the wait is bounded by deadline (see boundAfterKill).
func (p *process) killed(deadline time.Time, code int) {
	close(p.killDone)
	go p.boundAfterKill(deadline, code)
}

// killFailed completes a kill that was refused or not confirmed: Kill
// returns the error, and so does Wait, at once (unless the command has
// already ended).
func (p *process) killFailed(cause error) {
	select {
	case <-p.done:
		close(p.killDone)
		return
	default:
	}
	op, msg := "kill", "the kill was not confirmed, so the command may still be running in the sandbox (destroying the sandbox ends it)"
	var kind error
	if readErr := p.readError(); readErr != nil {
		op, msg = "exec", fmt.Sprintf("Modal stopped answering: reading the command's output failed (%v), and the kill that followed was not confirmed, so the command may still be running in the sandbox (destroying the sandbox ends it)", readErr)
	} else if cerr := p.startCtx.Err(); cerr != nil {
		msg = fmt.Sprintf("the command's context ended (%v), and the kill that followed was not confirmed, so the command may still be running in the sandbox (destroying the sandbox ends it)", cerr)
		kind = cerr
	}
	err := &Error{Op: op, Sandbox: p.s.id, Kind: kind, Msg: msg, Err: cause}
	p.killErr = err
	close(p.killDone)
	p.end(-1, err)
}

// boundAfterKill ends the wait of a killed command (code: 137, or -1 for
// one that never started) if its output has not ended by deadline, or its
// exit status has not come killedStatusGrace after the output ended.
func (p *process) boundAfterKill(deadline time.Time, code int) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
		p.end(code, &Error{Op: "exec", Sandbox: p.s.id, Msg: fmt.Sprintf("the command was killed, but its output did not end within %v of the kill: it may be incomplete", KillGrace)})
		return
	case <-p.outputDone:
	}
	t.Reset(min(killedStatusGrace, time.Until(deadline)))
	select {
	case <-p.done:
	case <-t.C:
		p.s.s.log.Warn("Modal did not report the exit status of a killed command; reporting it as killed", "sandbox", p.s.id, "pid", p.pid)
		var err error
		if code != 137 {
			err = &Error{Op: "exec", Sandbox: p.s.id, Msg: "the command ended before it started, and Modal did not report its exit status"}
		}
		p.end(code, err)
	}
}

// watchStatus bounds the wait for the exit status once the output has
// ended: after statusGrace without it, and every probeInterval after that,
// it checks whether the command still runs (see statusGrace). A kill, or
// a failure to read the output (which kills), bounds the wait instead.
func (p *process) watchStatus() {
	select {
	case <-p.done:
		return
	case <-p.outputDone:
	}
	t := time.NewTimer(statusGrace)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		if p.killing.Load() || p.readError() != nil {
			return
		}
		alive, err := p.alive()
		if p.killing.Load() {
			return
		}
		switch {
		case err != nil && isGone(err):
			ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
			why := p.s.whyGone(ctx)
			cancel()
			p.end(-1, stoppedError("exec", p.s.id, why, err))
			return
		case err != nil:
			p.end(-1, &Error{Op: "exec", Sandbox: p.s.id, Msg: "Modal stopped answering: the command's output ended, its exit status did not come, and checking on the command failed; it may still be running in the sandbox (destroying the sandbox ends it)", Err: err})
			return
		case !alive:
			p.end(-1, &Error{Op: "exec", Sandbox: p.s.id, Msg: "the command has exited, but Modal did not report its exit status"})
			return
		}
		t.Reset(probeInterval)
	}
}

// alive reports whether the command still runs, with one exec (checker)
// that reads the answer from the checker's output, bounded by
// probeTimeout.
func (p *process) alive() (bool, error) {
	if p.pid == "" {
		return false, nil // the launcher ended without starting a command
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := p.s.runScript(ctx, checker, p.pid)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("no answer from Modal within %v (%w)", probeTimeout, err)
		}
		return false, err
	}
	switch out = strings.TrimSpace(out); out {
	case "alive":
		return true, nil
	case "gone":
		return false, nil
	}
	return false, fmt.Errorf("the check printed %q", out)
}

// runScript runs a small shell script in the sandbox and returns what it
// printed. It reads the script's output to its end rather than waiting
// for its exit status, so it needs only the calls that start a command
// and read its output. ctx bounds it all: the SDK reads output on a
// context of its own, which is closed when ctx ends.
func (s *Sandbox) runScript(ctx context.Context, script string, args ...string) (string, error) {
	argv := append([]string{"/bin/sh", "-c", script, "sh"}, args...)
	cp, err := s.sb.Exec(ctx, argv, &modalsdk.SandboxExecParams{Stderr: modalsdk.Ignore})
	if err != nil {
		return "", err
	}
	defer cp.Stdout.Close()
	stop := context.AfterFunc(ctx, func() { cp.Stdout.Close() })
	defer stop()
	out, err := io.ReadAll(io.LimitReader(cp.Stdout, 64<<10))
	if err != nil {
		if ctx.Err() != nil {
			return string(out), ctx.Err()
		}
		return string(out), err
	}
	return string(out), nil
}
