//go:build linux

package local

// Commands: a process running in the sandbox, its output piped straight
// to the host.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// outputGrace is how long Wait keeps reading a command's output after it
// exited, for output still in flight; a background process that inherited
// the pipes does not hold Wait longer than this.
const outputGrace = 250 * time.Millisecond

// Start runs a command in the sandbox. Its stdio are pipes whose far ends
// go straight to the process: output never passes through the agent.
func (s *sandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// One writer for both streams: one pipe for both, so order is kept.
	combined := driver.SameWriter(req.Stdout, req.Stderr)
	errR, errW := outR, outW
	if !combined {
		if errR, errW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			return nil, err
		}
	}
	fds := []*os.File{outW, errW}
	var inW *os.File
	if req.Stdin != nil {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			outR.Close()
			errR.Close()
			outW.Close()
			errW.Close()
			return nil, err
		}
		fds = append(fds, inR)
	}
	closeMine := func() {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
	}
	grp, err := s.cg.command() // nil where commands get no cgroup of their own
	if err != nil {
		closeMine()
		for _, f := range fds {
			f.Close()
		}
		select {
		case <-s.exited: // its cgroup went with it
			err = s.stoppedErr()
		default:
		}
		return nil, err
	}
	if grp != nil {
		fds = append(fds, grp.files()...)
	}
	o, err := s.begin(ctx, &agentproto.Request{Op: agentproto.OpExec, Argv: req.Argv, Env: req.Env, Dir: req.Dir, Stdin: req.Stdin != nil, Group: grp != nil}, fds...)
	if err != nil {
		closeMine()
		grp.done()
		return nil, err
	}
	_, err = s.started(ctx, o)
	if err != nil {
		o.conn.Close()
		closeMine()
		grp.done()
		return nil, err
	}
	p := &process{op: o, outR: outR, errR: errR, inW: inW, s: s, group: grp}
	if s.cg != nil {
		p.oomBefore = s.cg.oomKills()
	}
	p.copies.Add(1)
	go p.copy(req.Stdout, outR)
	if !combined {
		p.copies.Add(1)
		go p.copy(req.Stderr, errR)
	}
	if inW != nil {
		go func() {
			io.Copy(inW, req.Stdin)
			inW.Close()
		}()
	}
	return p, nil
}

// started reads the agent's answer to the start of a command (an exec or
// a terminal): nil error once it runs, else why not.
func (s *sandbox) started(ctx context.Context, o *op) (*agentproto.Reply, error) {
	rep, err := o.answer(ctx)
	if err != nil {
		return nil, s.lost(err)
	}
	if rep.Err == "" {
		return rep, nil
	}
	switch {
	case rep.NotFound:
		// The agent's reason names the program already ("x: command
		// not found", or why exec failed): say it once.
		return nil, fmt.Errorf("local: %s: %w", strings.TrimSuffix(rep.Err, ": command not found"), driver.ErrCommandNotFound)
	case rep.Unsupported:
		return nil, fmt.Errorf("local: %s: %w", rep.Err, driver.ErrUnsupported)
	case rep.Errno != 0:
		return nil, fmt.Errorf("local: %s: %w", rep.Err, syscall.Errno(rep.Errno))
	}
	return nil, errors.New(rep.Err)
}

type process struct {
	s          *sandbox
	op         *op
	outR, errR *os.File
	inW        *os.File
	copies     sync.WaitGroup
	copied     atomic.Int64 // bytes the copies have read, both streams

	killMu sync.Mutex
	ended  bool

	oomBefore uint64    // the cgroup's OOM kill count when the command started
	group     *cmdGroup // the command's own cgroup, if any
}

func (p *process) copy(w io.Writer, r *os.File) {
	defer p.copies.Done()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	io.CopyBuffer(w, countingReader{r, &p.copied}, *buf)
}

// copyBuffers are the buffers of copy, reused: two commands' outputs
// need two fresh 32 KiB buffers otherwise, zeroed and faulted in page by
// page, which a profile of 50 sandboxes started at once put at 4% of
// the host's CPU time.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// drain ends the copies of a command that exited while something it
// started still holds its output open. Everything the command wrote
// before it exited is in the pipes or already read: the copies read all of
// it first, however long a loaded machine or a slow writer makes them
// take, and only then are the pipes closed. Output of the processes left
// behind after that is not the command's and is not waited for.
func (p *process) drain(done <-chan struct{}) {
	pipes := []*os.File{p.outR}
	if p.errR != p.outR {
		pipes = append(pipes, p.errR)
	}
	buffered := func() (n int64) {
		for _, f := range pipes {
			n += pipeBuffered(f)
		}
		return n
	}
	// What is buffered now was written before now; reading at least that
	// much more, or finding the pipes empty, means it all arrived.
	target := p.copied.Load() + buffered()
	for p.copied.Load() < target && buffered() > 0 {
		select {
		case <-done:
			return
		case <-time.After(time.Millisecond):
		}
	}
	p.outR.Close()
	p.errR.Close()
	<-done
}

// pipeBuffered returns how many bytes wait unread in a pipe.
func pipeBuffered(f *os.File) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) // FIONREAD
	return int64(n)
}

func (p *process) Wait() (int, error) {
	rep, err := p.op.reply(context.Background())
	p.group.reuse()
	p.killMu.Lock()
	p.ended = true
	p.killMu.Unlock()
	p.op.conn.Close()
	if p.inW != nil {
		p.inW.Close()
	}
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputGrace):
		// Something the command started still holds its output open, or
		// the copies are slow: read what the command wrote, then stop.
		p.drain(done)
	}
	p.outR.Close()
	p.errR.Close()
	if err != nil {
		return -1, p.s.lost(err)
	}
	if rep.Exit == nil {
		return -1, fmt.Errorf("local: sandbox %s: agent sent no exit status", p.s.id)
	}
	if *rep.Exit == 128+int(syscall.SIGKILL) && p.s.cg != nil && p.s.cg.oomKills() > p.oomBefore {
		return *rep.Exit, fmt.Errorf("local: sandbox %s: command killed for going over the %s memory limit: %w",
			p.s.id, bytesString(p.s.p.opts.MaxMemory), driver.ErrOutOfMemory)
	}
	return *rep.Exit, nil
}

func (p *process) Kill() error {
	p.killMu.Lock()
	defer p.killMu.Unlock()
	if p.ended {
		return nil
	}
	return agentproto.WriteMsg(p.op.conn, agentproto.Control{Kill: true})
}
