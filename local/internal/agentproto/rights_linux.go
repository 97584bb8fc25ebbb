//go:build linux

package agentproto

import (
	"net"

	"golang.org/x/sys/unix"
)

// ParseRights returns the descriptors passed in a control socket
// message's out-of-band data, those parsed before an error included (they
// are the receiver's to close).
func ParseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, err
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

// WriteMsgRights is WriteMsg with descriptors: they travel with the
// message's first byte. The receiver reads the connection through a
// RightsReader to get them; the sender keeps its own copies.
func WriteMsgRights(c *net.UnixConn, v any, fds ...int) error {
	buf, err := encodeMsg(v)
	if err != nil {
		return err
	}
	n, _, err := c.WriteMsgUnix(buf, unix.UnixRights(fds...), nil)
	if err == nil && n < len(buf) {
		_, err = c.Write(buf[n:])
	}
	return err
}

// RightsReader reads a unix stream connection and keeps the descriptors
// that come with the data (WriteMsgRights), at most MaxRights per read;
// the kernel closes any beyond. Not safe for concurrent use.
type RightsReader struct {
	Conn *net.UnixConn
	fds  []int
}

// MaxRights bounds the descriptors a RightsReader takes with one read.
const MaxRights = 4

func (r *RightsReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(MaxRights*4))
	n, oobn, _, _, err := r.Conn.ReadMsgUnix(p, oob)
	if oobn > 0 {
		fds, _ := ParseRights(oob[:oobn])
		r.fds = append(r.fds, fds...)
	}
	if n < 0 {
		n = 0 // recvmsg's -1 on an error (a reset connection): io.Reader allows no negative count
	}
	return n, err
}

// Take returns the descriptors received so far (close-on-exec, the
// caller's to close) and forgets them.
func (r *RightsReader) Take() []int {
	fds := r.fds
	r.fds = nil
	return fds
}
