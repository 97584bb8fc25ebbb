//go:build linux

package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// listenProxy runs in the agent: it listens on agentproto.ProxyAddr
// inside the sandbox and passes each accepted connection to the host.
// The socket is made with system calls, not package net (see conn).
func (a *agent) listenProxy() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	ln := os.NewFile(uintptr(fd), "proxy")
	fail := func(op string, err error) error {
		ln.Close()
		return fmt.Errorf("proxy listener: %s %s: %w", op, agentproto.ProxyAddr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: agentproto.ProxyPort}); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return fail("listen", err)
	}
	raw, err := ln.SyscallConn()
	if err != nil {
		return fail("poll", err)
	}
	go func() {
		defer ln.Close()
		for {
			var nfd int
			var opErr error
			err := raw.Read(func(s uintptr) bool {
				nfd, _, opErr = unix.Accept4(int(s), unix.SOCK_CLOEXEC)
				return opErr != unix.EAGAIN
			})
			if err == nil {
				err = opErr
			}
			switch err {
			case nil:
			case unix.ECONNABORTED, unix.EINTR:
				continue // that connection only
			default:
				return
			}
			a.ctl.WriteMsg([]byte{agentproto.MsgProxied}, unix.UnixRights(nfd))
			unix.Close(nfd)
		}
	}()
	return nil
}
