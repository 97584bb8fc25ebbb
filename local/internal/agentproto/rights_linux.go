//go:build linux

package agentproto

import "golang.org/x/sys/unix"

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
