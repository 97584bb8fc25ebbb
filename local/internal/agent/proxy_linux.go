//go:build linux

package agent

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// listenProxy runs in the agent: it listens on proxyAddr inside the
// sandbox and passes each accepted connection to the host.
func (a *agent) listenProxy() error {
	ln, err := net.Listen("tcp", agentproto.ProxyAddr)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				continue
			}
			a.ctl.WriteMsgUnix([]byte{agentproto.MsgProxied}, unix.UnixRights(int(f.Fd())), nil)
			f.Close()
		}
	}()
	return nil
}
