//go:build linux

package local

// The protocol client: one connection per operation to the agent, and
// the errors of an agent that went away or stopped answering.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// agentReplyTimeout bounds the wait for the agent's answer to an operation
// that waits on nothing of the caller's (a ping, a stat, a mkdir, the
// start of a command or of a file transfer): an agent that takes this long
// is wedged, and the caller gets an error that says so, not a hang.
const agentReplyTimeout = time.Minute

func (s *sandbox) stoppedErr() error {
	return fmt.Errorf("local: sandbox %s: %w", s.id, driver.ErrStopped)
}

// op is one operation's connection to the agent.
type op struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// begin sends the agent a new operation with the given descriptors, then
// the request, and returns the connection. The descriptors are the
// agent's: begin closes them here.
func (s *sandbox) begin(ctx context.Context, req *agentproto.Request, fds ...*os.File) (*op, error) {
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	select {
	case <-s.exited:
		return nil, s.stoppedErr()
	default:
	}
	conn, theirs, err := unixPair(unix.SOCK_STREAM)
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	rights := []int{int(theirs.Fd())}
	for _, f := range fds {
		rights = append(rights, int(f.Fd()))
	}
	if _, _, err := s.ctl.WriteMsgUnix([]byte{agentproto.MsgOperation}, unix.UnixRights(rights...), nil); err != nil {
		conn.Close()
		return nil, s.stoppedErr()
	}
	if err := agentproto.WriteMsg(conn, req); err != nil {
		conn.Close()
		if errors.Is(err, agentproto.ErrTooBig) {
			// Arguments and environment far past what exec takes: the
			// caller's mistake, not the sandbox's end.
			return nil, fmt.Errorf("local: the request is too large for the sandbox (%v): %w", err, syscall.E2BIG)
		}
		return nil, s.stoppedErr()
	}
	return &op{conn: conn, r: bufio.NewReader(conn)}, nil
}

// answer reads the agent's next reply to an operation that waits on
// nothing of the caller's, giving up when ctx is done or after
// agentReplyTimeout.
func (o *op) answer(ctx context.Context) (*agentproto.Reply, error) {
	bounded, cancel := context.WithTimeout(ctx, agentReplyTimeout)
	defer cancel()
	rep, err := o.reply(bounded)
	if err != nil && ctx.Err() == nil && bounded.Err() != nil {
		return nil, fmt.Errorf("the sandbox's agent did not answer within %v", agentReplyTimeout)
	}
	return rep, err
}

// reply reads the agent's next reply, giving up when ctx is done.
func (o *op) reply(ctx context.Context) (*agentproto.Reply, error) {
	stop := context.AfterFunc(ctx, func() { o.conn.SetReadDeadline(time.Now()) })
	defer stop()
	var rep agentproto.Reply
	if err := agentproto.ReadMsg(o.r, &rep); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return &rep, nil
}

// call runs a request/reply operation.
func (s *sandbox) call(ctx context.Context, req *agentproto.Request) (*agentproto.Reply, error) {
	o, err := s.begin(ctx, req)
	if err != nil {
		return nil, err
	}
	defer o.conn.Close()
	rep, err := o.answer(ctx)
	if err != nil {
		return nil, s.lost(err)
	}
	return rep, nil
}

// lost turns a broken connection into the reason: usually the sandbox died.
func (s *sandbox) lost(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	s.mu.Lock()
	destroying := s.destroyed
	s.mu.Unlock()
	if destroying {
		// Destroy has killed, or is killing, the agent: that is why the
		// connection ended, and the kill is certain, so waiting is bounded.
		<-s.exited
		return s.stoppedErr()
	}
	// An agent that died on its own (out of memory, its lifetime) closes
	// its connections a moment before the host reaps it; on a loaded
	// machine that moment can be long.
	select {
	case <-s.exited:
		return s.stoppedErr()
	case <-time.After(lostGrace):
		return fmt.Errorf("local: sandbox %s: lost connection to agent: %w", s.id, err)
	}
}

// lostGrace is how long an operation whose connection to the agent broke
// waits for the agent's exit, to say the sandbox stopped rather than that
// the connection was lost.
const lostGrace = time.Second

// msgConn is a *net.UnixConn as agentproto.MsgConn.
type msgConn struct{ *net.UnixConn }

func (c msgConn) ReadMsg(p, oob []byte) (n, oobn int, err error) {
	n, oobn, _, _, err = c.ReadMsgUnix(p, oob)
	return n, oobn, err
}

func (c msgConn) WriteMsg(p, oob []byte) (int, error) {
	n, _, err := c.WriteMsgUnix(p, oob, nil)
	return n, err
}

// unixPair makes a connected pair of unix sockets of the given type: ours
// as a connection, theirs as a file to hand to the agent.
func unixPair(typ int) (ours *net.UnixConn, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("local: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "socket")
	theirs = os.NewFile(uintptr(fds[1]), "socket")
	c, err := net.FileConn(mine) // a dup; ours is closed below
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("local: %w", err)
	}
	return c.(*net.UnixConn), theirs, nil
}
