//go:build linux

package agentproto

import (
	"io"

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

// A MsgConn is a unix stream socket that carries descriptors with its
// data: recvmsg and sendmsg. The host adapts a *net.UnixConn; the agent
// has its own (package net is not one of its dependencies).
type MsgConn interface {
	io.ReadWriter
	// ReadMsg reads data into p and control messages into oob; received
	// descriptors are close-on-exec.
	ReadMsg(p, oob []byte) (n, oobn int, err error)
	// WriteMsg writes p with the control messages oob.
	WriteMsg(p, oob []byte) (n int, err error)
}

// WriteMsgRights is WriteMsg with descriptors: they travel with the
// message's first byte. The receiver reads the connection through a
// RightsReader to get them; the sender keeps its own copies.
func WriteMsgRights(c MsgConn, v any, fds ...int) error {
	buf, err := encodeMsg(v)
	if err != nil {
		return err
	}
	n, err := c.WriteMsg(buf, unix.UnixRights(fds...))
	if err == nil && n < len(buf) {
		_, err = c.Write(buf[n:])
	}
	return err
}

// RightsReader reads a unix stream connection and keeps the descriptors
// that come with the data (WriteMsgRights), at most MaxRights per read;
// the kernel closes any beyond. Not safe for concurrent use.
type RightsReader struct {
	Conn MsgConn
	fds  []int
}

// MaxRights bounds the descriptors a RightsReader takes with one read.
const MaxRights = 4

func (r *RightsReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(MaxRights*4))
	n, oobn, err := r.Conn.ReadMsg(p, oob)
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
