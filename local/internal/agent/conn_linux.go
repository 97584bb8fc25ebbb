//go:build linux

package agent

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// conn is a unix stream socket of the agent's: the control socket and
// each operation's connection. It is an *os.File on a non-blocking
// descriptor (so reads and writes wait in the runtime's poller, as
// package net's do) with recvmsg and sendmsg for descriptors.
//
// The agent does not use package net for it: Go initialises packages in
// dependency order, ties broken by import path, and net (with
// path/filepath, regexp and crypto/rand) sorts after almost everything
// else linked into the host program the agent is. Depending on it made
// every sandbox's agent run about 50 more package initialisers, of
// libraries it never uses, before its own code (TestAgentStartsEarly).
type conn struct {
	*os.File
	raw syscall.RawConn
}

// newConn takes over fd, a close-on-exec unix stream socket.
func newConn(fd int, name string) (*conn, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &conn{File: f, raw: raw}, nil
}

// ReadMsg reads data and control messages (recvmsg); descriptors that
// arrive are close-on-exec.
func (c *conn) ReadMsg(p, oob []byte) (n, oobn int, err error) {
	var opErr error
	err = c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, opErr = unix.Recvmsg(int(fd), p, oob, unix.MSG_CMSG_CLOEXEC)
		return opErr != unix.EAGAIN
	})
	if err == nil {
		err = opErr
	}
	if err == nil && n == 0 && oobn == 0 && len(p) > 0 {
		err = io.EOF
	}
	if n < 0 {
		n = 0
	}
	return n, oobn, err
}

// WriteMsg writes p with the control messages oob (sendmsg); oob goes
// with p's first byte.
func (c *conn) WriteMsg(p, oob []byte) (n int, err error) {
	var opErr error
	err = c.raw.Write(func(fd uintptr) bool {
		n, opErr = unix.SendmsgN(int(fd), p, oob, nil, unix.MSG_NOSIGNAL)
		return opErr != unix.EAGAIN
	})
	if err == nil {
		err = opErr
	}
	return n, err
}
