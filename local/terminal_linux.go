//go:build linux

package local

// Terminals: a program on a pseudo-terminal in the sandbox. The agent
// opens the terminal (in an isolated sandbox, in its own devpts
// instance) and starts the program on it as it starts any command: by
// the confined spawner thread, in a cgroup of its own. The master side
// comes back with the reply that the program started, so the host reads,
// writes and resizes the terminal directly; keystrokes and output never
// pass through the agent.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

var _ driver.Terminaler = (*sandbox)(nil)

// Terminal starts req.Argv on a new pseudo-terminal in the sandbox, with
// the same confinement, environment and working directory rules as any
// command. The program leads a session of its own with the terminal as
// its controlling terminal (job control, Ctrl-C). The terminal holds a
// descriptor and the program's cgroup until Close or the sandbox's end.
func (s *sandbox) Terminal(ctx context.Context, req *driver.TerminalRequest) (driver.Terminal, error) {
	grp, err := s.cg.command() // nil where commands get no cgroup of their own
	if err != nil {
		select {
		case <-s.exited: // its cgroup went with it
			err = s.stoppedErr()
		default:
		}
		return nil, err
	}
	var fds []*os.File
	if grp != nil {
		fds = grp.files()
	}
	o, err := s.begin(ctx, &agentproto.Request{
		Op: agentproto.OpTerminal, Argv: req.Argv, Env: req.Env, Dir: req.Dir,
		Rows: req.Rows, Cols: req.Cols, Group: grp != nil,
	}, fds...)
	if err != nil {
		grp.done()
		return nil, err
	}
	// The reply that the program started carries the master side.
	rights := &agentproto.RightsReader{Conn: msgConn{o.conn}}
	o.r = bufio.NewReader(rights)
	_, err = s.started(ctx, o)
	var master *os.File
	if err == nil {
		master, err = ptyMaster(rights.Take())
	} else {
		closeFDs(rights.Take())
	}
	if err != nil {
		o.conn.Close() // the agent kills the program if it started
		grp.done()
		return nil, err
	}
	t := &terminal{
		s: s, op: o, master: master, group: grp,
		exited: make(chan struct{}), over: make(chan struct{}),
		eof: make(chan struct{}), closing: make(chan struct{}),
	}
	if s.cg != nil {
		t.oomBefore = s.cg.oomKills()
	}
	go t.watch()
	go t.endOutput()
	if !s.addTerminal(t) {
		t.Close()
		return nil, s.stoppedErr()
	}
	return t, nil
}

// ptyMaster checks that the one descriptor the agent sent is a
// pseudo-terminal's master side (the agent is not trusted: it must not
// make the host read, write or ioctl anything else) and returns it ready
// for the runtime's poller.
func ptyMaster(fds []int) (*os.File, error) {
	if len(fds) != 1 {
		closeFDs(fds)
		return nil, fmt.Errorf("local: the sandbox's agent sent %d descriptors with the terminal, want 1", len(fds))
	}
	fd := fds[0]
	var st unix.Stat_t
	// Every master is an open of ptmx: character device 5:2.
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR ||
		unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 {
		unix.Close(fd)
		return nil, errors.New("local: the sandbox's agent sent something other than a pseudo-terminal with the terminal")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("local: terminal: %w", err)
	}
	return os.NewFile(uintptr(fd), "pty"), nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// terminal is the host's side of a program on a pseudo-terminal: the
// master side, and the operation's connection to the agent, which
// reports the exit and kills what is on the terminal.
type terminal struct {
	s         *sandbox
	op        *op
	master    *os.File
	group     *cmdGroup // the program's own cgroup, if any
	oomBefore uint64    // the sandbox's OOM kill count at the start

	exited chan struct{} // closed once code and err are known
	code   int
	err    error
	over   chan struct{} // closed when the agent is done with the terminal, or gone

	read    atomic.Int64  // bytes Read returned
	eof     chan struct{} // closed when Read found the slave side closed
	eofOnce sync.Once
	drained atomic.Bool // endOutput ended the output: a deadline error is the end

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// watch waits for the agent's exit report, then for its Done, which comes
// once Close has hung up.
func (t *terminal) watch() {
	defer close(t.over)
	rep, err := t.op.reply(context.Background())
	switch {
	case err != nil:
		t.code, t.err = -1, t.s.lost(err)
	case rep.Exit == nil:
		t.code, t.err = -1, fmt.Errorf("local: sandbox %s: agent sent no exit status for the terminal", t.s.id)
	default:
		t.code = *rep.Exit
		if t.code == 128+int(syscall.SIGKILL) && t.s.cg != nil && t.s.cg.oomKills() > t.oomBefore {
			t.err = fmt.Errorf("local: sandbox %s: the terminal's program was killed for going over the %s memory limit: %w",
				t.s.id, bytesString(t.s.p.opts.MaxMemory), driver.ErrOutOfMemory)
		}
	}
	close(t.exited)
	if err == nil && rep.Exit != nil {
		t.op.reply(context.Background()) // Done, or the connection's end
	}
}

// ptyInFlight bounds what a terminal holds beyond what FIONREAD on its
// master shows: the tty layer's buffers between the two sides (about 14
// kB on Linux 6; FIONREAD shows the 4 kB line discipline buffer).
const ptyInFlight = 64 << 10

// endOutput makes Read end once the program has exited and what it wrote
// is read. Where nothing else holds the terminal, Read finds that by
// itself (EIO on the master). Where something the program started still
// does (a background job), the output the program wrote before it exited
// is read to the end, however slowly the caller reads, and then Read
// returns io.EOF; what the leftovers print after that is not the
// program's.
func (t *terminal) endOutput() {
	select {
	case <-t.exited:
	case <-t.closing:
		return
	}
	select {
	case <-t.eof:
		return
	case <-t.closing:
		return
	case <-time.After(outputGrace):
	}
	// What is buffered now was written before now: what the master shows
	// as readable (FIONREAD), and up to ptyInFlight more that the kernel
	// moves there as it is read. The output ends once the terminal is
	// found empty twice, 5 ms apart, or that much more is read (processes
	// left behind may go on writing). A caller that stops reading keeps
	// this waiting, less and less often, until Close.
	target := t.read.Load() + pipeBuffered(t.master) + ptyInFlight
	empty := 0
	for delay := time.Millisecond; t.read.Load() < target && empty < 2; delay = min(2*delay, 100*time.Millisecond) {
		if pipeBuffered(t.master) == 0 {
			empty++
			delay = 5 * time.Millisecond // time for the kernel to move more along
		} else {
			empty = 0
		}
		select {
		case <-t.closing:
			return
		case <-time.After(delay):
		}
	}
	t.drained.Store(true)
	t.master.SetReadDeadline(time.Now())
}

// Read reads what the program wrote to the terminal, and io.EOF once it
// has exited and all it wrote is read, or once the terminal is closed.
func (t *terminal) Read(p []byte) (int, error) {
	n, err := t.master.Read(p)
	if n > 0 {
		t.read.Add(int64(n))
		return n, nil
	}
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, syscall.EIO):
		// Reading the master side of a terminal that nothing holds open
		// any more fails with EIO, once everything written is read.
		t.eofOnce.Do(func() { close(t.eof) })
		select {
		case <-t.exited:
		case <-t.closing:
		}
		return 0, io.EOF
	case errors.Is(err, os.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded) && t.drained.Load():
		return 0, io.EOF
	}
	return 0, fmt.Errorf("local: terminal: %w", err)
}

// Write types p into the terminal.
func (t *terminal) Write(p []byte) (int, error) {
	n, err := t.master.Write(p)
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return n, fmt.Errorf("local: write to a closed terminal: %w", os.ErrClosed)
		}
		return n, fmt.Errorf("local: terminal: %w", err)
	}
	return n, nil
}

// Resize sets the terminal's size; the kernel sends SIGWINCH to its
// foreground process group.
func (t *terminal) Resize(rows, cols int) error {
	if rows <= 0 || cols <= 0 || rows > 0xffff || cols > 0xffff {
		return fmt.Errorf("local: invalid terminal size %dx%d: %w", rows, cols, driver.ErrInvalid)
	}
	rc, err := t.master.SyscallConn()
	if err != nil {
		return fmt.Errorf("local: resize a closed terminal: %w", os.ErrClosed)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	}); err != nil {
		return fmt.Errorf("local: resize a closed terminal: %w", os.ErrClosed)
	}
	if ioErr != nil {
		return fmt.Errorf("local: resize terminal: %w", ioErr)
	}
	return nil
}

// Wait waits for the program's exit code.
func (t *terminal) Wait() (int, error) {
	<-t.exited
	return t.code, t.err
}

// Close hangs up: the agent kills everything on the terminal (the
// program's cgroup, or its session), and Close returns once it has, then
// releases the master side.
func (t *terminal) Close() error {
	t.closeOnce.Do(func() {
		close(t.closing)
		// Where the agent is gone, so is everything on the terminal, and
		// the write fails: over is closed all the same.
		agentproto.WriteMsg(t.op.conn, agentproto.Control{Kill: true})
		clean := true
		select {
		case <-t.over:
		case <-time.After(agentReplyTimeout):
			clean = false
			t.closeErr = fmt.Errorf("local: sandbox %s: the agent did not confirm within %v that the terminal's processes are gone; destroy the sandbox to be sure", t.s.id, agentReplyTimeout)
		}
		t.op.conn.Close()
		t.master.Close()
		if clean {
			t.group.reuse()
		} else {
			t.group.done()
		}
		t.s.removeTerminal(t)
	})
	return t.closeErr
}

// addTerminal registers an open terminal, for the sandbox's end to close;
// false if the sandbox has already ended.
func (s *sandbox) addTerminal(t *terminal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.termsClosed {
		return false
	}
	if s.terms == nil {
		s.terms = map[*terminal]struct{}{}
	}
	s.terms[t] = struct{}{}
	return true
}

func (s *sandbox) removeTerminal(t *terminal) {
	s.mu.Lock()
	delete(s.terms, t)
	s.mu.Unlock()
}

// closeTerminals closes every terminal of a sandbox that has ended, and
// any opened later at once.
func (s *sandbox) closeTerminals() {
	s.mu.Lock()
	terms := s.terms
	s.terms, s.termsClosed = nil, true
	s.mu.Unlock()
	for t := range terms {
		t.Close()
	}
}
