package modaltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal/modaltest/internal/guest"
)

// process is a command running (or run) in a sandbox: an exec or the
// entrypoint. Its output is kept whole after it exits.
type process struct {
	id             string
	sb             *sandbox
	stdout, stderr *output
	stdin          *input
	done           chan struct{}
	code           int // valid once done is closed

	mu     sync.Mutex
	stream context.CancelFunc // the stdin stream in progress, if any
}

type execSpec struct {
	id   string
	argv []string
	env  map[string]string
	dir  string
	// stdout and stderr receive the output; nil discards it (DEVNULL).
	stdout, stderr *output
	stdin          *input
	// mergeStderr sends stderr to stdout (STDERR_CONFIG_STDOUT).
	mergeStderr bool
	// pty, when enabled, runs the command on a pseudo-terminal of its
	// size and TERM: stdout is the terminal's output (stderr included),
	// stdin its keyboard.
	pty        *pb.PTYInfo
	timeout    time.Duration
	entrypoint bool
}

// startProcess starts a command. Commands that cannot start because they
// do not exist (or their working directory does not) still get a process,
// one that has already failed with 127 (or 126) and said why on stderr, as
// a shell would; only a sandbox that is gone is an error.
func (sb *sandbox) startProcess(spec execSpec) (*process, error) {
	p := &process{id: spec.id, sb: sb, stdout: spec.stdout, stderr: spec.stderr, stdin: spec.stdin, done: make(chan struct{})}
	if p.stdout == nil {
		p.stdout = newOutput()
		p.stdout.Close()
	}
	if p.stderr == nil {
		p.stderr = newOutput()
		p.stderr.Close()
	}
	if p.stdin == nil {
		p.stdin = newInput()
	}
	var outW, errW io.Writer = io.Discard, io.Discard
	if spec.stdout != nil {
		outW = spec.stdout
	}
	if spec.stderr != nil {
		errW = spec.stderr
	}
	if spec.mergeStderr || spec.pty.GetEnabled() {
		errW = outW
	}
	argv, env := spec.argv, spec.env
	isGuest := len(argv) > 0 && argv[0] == guest.ToolPath
	if isGuest {
		env = withEnv(withEnv(env, guest.ModeEnv, guest.ModeFSTools), "GORACE", raceExitNow)
	}

	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	if cs == nil || !sb.running() {
		return nil, status.Errorf(codes.NotFound, "Sandbox %s has finished", sb.id)
	}
	if spec.pty.GetEnabled() && !isGuest {
		if tp, err := sb.startTerminal(p, cs, spec, outW); tp != nil || err != nil {
			return tp, err
		}
	}
	var h *compute.Process
	var err error
	for attempt := 0; ; attempt++ {
		if isGuest {
			path, ierr := sb.installGuest()
			if ierr != nil {
				if !sb.running() {
					return nil, status.Errorf(codes.NotFound, "Sandbox %s has finished", sb.id)
				}
				fmt.Fprintf(errW, "modal emulator: cannot install %s in the sandbox: %v\n", guest.ToolName, ierr)
				p.exit(1)
				return p, nil
			}
			argv = append([]string{path}, spec.argv[1:]...)
		}
		h, err = cs.Start(sb.ctx, argv, &compute.RunOptions{
			Env: env, Dir: spec.dir, Stdin: p.stdin, Stdout: outW, Stderr: errW, MaxOutput: -1,
		})
		if err != nil && isGuest && attempt == 0 && errors.Is(err, compute.ErrCommandNotFound) {
			sb.forgetGuest(argv[0]) // removed by the sandbox's code: install it again
			continue
		}
		break
	}
	if err != nil {
		if !sb.running() || errors.Is(err, compute.ErrStopped) {
			return nil, status.Errorf(codes.NotFound, "Sandbox %s has finished", sb.id)
		}
		code := 126
		msg := err.Error()
		if errors.Is(err, compute.ErrCommandNotFound) {
			code = 127
			msg = fmt.Sprintf("exec: %q: executable file not found in $PATH", argv[0])
		}
		fmt.Fprintf(errW, "%s\n", msg)
		p.exit(code)
		return p, nil
	}
	if !spec.entrypoint {
		sb.hold()
	}
	var timer *time.Timer
	if spec.timeout > 0 {
		timer = time.AfterFunc(spec.timeout, func() { h.Kill() })
	}
	sb.s.goBackground(func() {
		res, err := h.Wait()
		if timer != nil {
			timer.Stop()
		}
		code := res.ExitCode
		if err != nil && code < 0 {
			code = 137 // the sandbox went away under it
		}
		if !spec.entrypoint {
			sb.release()
		}
		p.exit(code)
	})
	return p, nil
}

// exit records the exit code and ends the process's streams.
func (p *process) exit(code int) {
	p.code = code
	p.stdout.Close()
	p.stderr.Close()
	p.stdin.kill()
	close(p.done)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// beginStream registers a stdin stream, evicting the one before it.
func (p *process) beginStream(cancel context.CancelFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		p.stream()
	}
	p.stream = cancel
}

func (p *process) evictStream() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil {
		p.stream()
		p.stream = nil
	}
}

func withEnv(env map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(env)+1)
	for a, b := range env {
		out[a] = b
	}
	out[k] = v
	return out
}

// guestBinary is the executable copied into sandboxes to run the guest:
// the running program itself, which imports package guest.
type guestBinary struct {
	path string
}

func newGuestBinary() (*guestBinary, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("modaltest: finding this program's executable (copied into sandboxes for the filesystem tool): %w", err)
	}
	return &guestBinary{path: p}, nil
}

// installScript copies stdin into the first writable directory of the two
// (Modal's own path first) and prints where it went.
const installScript = `for d in /__modal/.bin /tmp/.__modal/.bin; do
  if mkdir -p "$d" 2>/dev/null && [ -w "$d" ]; then
    t="$d/.modal-sandbox-fs-tools.$$"
    cat > "$t" && chmod 755 "$t" && mv -f "$t" "$d/modal-sandbox-fs-tools" || { rm -f "$t"; exit 1; }
    printf '%s' "$d/modal-sandbox-fs-tools"
    exit 0
  fi
done
echo "no writable directory for the tool" >&2
exit 1`

// installGuest copies the guest into the sandbox, once, and returns its
// path there.
func (sb *sandbox) installGuest() (string, error) {
	sb.guestOnce.Lock()
	defer sb.guestOnce.Unlock()
	if sb.guestPath != "" {
		return sb.guestPath, nil
	}
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	if cs == nil {
		return "", errors.New("the sandbox is not running")
	}
	p, err := installGuestIn(sb.ctx, cs, sb.s.guest.path)
	if err != nil {
		return "", err
	}
	if sb.img.rootImage != "" {
		if p, err = wrapGuest(sb.ctx, cs, sb.s.guest.path, p); err != nil {
			return "", err
		}
	}
	sb.guestPath = p
	return p, nil
}

// forgetGuest drops a guest installation that has gone missing.
func (sb *sandbox) forgetGuest(path string) {
	sb.guestOnce.Lock()
	defer sb.guestOnce.Unlock()
	if sb.guestPath == path {
		sb.guestPath = ""
	}
}

// runGuest runs one guest mode in the sandbox and waits for it.
func (sb *sandbox) runGuest(ctx context.Context, mode string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	path, err := sb.installGuest()
	if err != nil {
		return -1, err
	}
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	return runIn(ctx, cs, path, mode, args, stdin, stdout, stderr)
}

// runIn runs the guest installed at path in a provider sandbox.
func runIn(ctx context.Context, cs *compute.Sandbox, path, mode string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	h, err := cs.Start(ctx, append([]string{path}, args...), &compute.RunOptions{
		Env: guestEnv(mode), Stdin: stdin, Stdout: stdout, Stderr: stderr, MaxOutput: -1,
	})
	if err != nil {
		return -1, err
	}
	res, err := h.Wait()
	if err != nil {
		return -1, err
	}
	return res.ExitCode, nil
}

func openFile(name string) (*os.File, error) { return os.Open(name) }

// raceExitNow keeps a race-enabled guest (a copy of a test binary built
// with -race) from sleeping a second at every exit, which the race
// runtime does by default.
const raceExitNow = "atexit_sleep_ms=0"

// guestEnv is the environment of a guest run in the given mode.
func guestEnv(mode string) map[string]string {
	return map[string]string{guest.ModeEnv: mode, "GORACE": raceExitNow}
}
