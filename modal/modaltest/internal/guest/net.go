package guest

import (
	"fmt"
	"io"
	"net"
	"time"
)

// dialLoopback connects to port on the sandbox's loopback, IPv4 first.
func dialLoopback(port string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), timeout)
	if err == nil {
		return c, nil
	}
	if c6, err6 := net.DialTimeout("tcp", net.JoinHostPort("::1", port), timeout); err6 == nil {
		return c6, nil
	}
	return nil, err
}

// connect relays stdin to a TCP connection to a port inside the sandbox
// and the connection back to stdout: one tunnel connection. The end of
// stdin half-closes the connection; the end of the connection ends the
// relay.
func connect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: connect PORT")
		return 2
	}
	c, err := dialLoopback(args[0], 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "connect to port %s inside the sandbox: %v\n", args[0], err)
		return 1
	}
	defer c.Close()
	go func() {
		io.Copy(c, stdin)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	io.Copy(stdout, c)
	return 0
}

// probe reports whether something listens on a port inside the sandbox.
func probe(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: probe-tcp PORT")
		return 2
	}
	c, err := dialLoopback(args[0], time.Second)
	if err != nil {
		return 1
	}
	c.Close()
	return 0
}
