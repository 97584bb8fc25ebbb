//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// notifyResize relays the window-size changes of this process's terminal
// (SIGWINCH) to c.
func notifyResize(c chan<- os.Signal) { signal.Notify(c, syscall.SIGWINCH) }

// terminalInput reads the keys typed on a terminal. Unlike a plain read
// of a terminal, which nothing can interrupt, its Read returns once Stop
// is called, so the goroutine that copies the keys ends with the session.
type terminalInput struct {
	fd   int
	wake [2]int // a pipe: Stop writes to it, Read polls it

	stopOnce, closeOnce sync.Once
}

// inputStops says that terminalInput.Read returns after Stop.
const inputStops = true

// errInputStopped ends Read after Stop.
var errInputStopped = errors.New("terminal input stopped")

func newTerminalInput(f *os.File) (*terminalInput, error) {
	in := &terminalInput{fd: int(f.Fd())}
	syscall.ForkLock.RLock() // no exec may inherit the pipe before it is close-on-exec
	err := unix.Pipe(in.wake[:])
	if err == nil {
		unix.CloseOnExec(in.wake[0])
		unix.CloseOnExec(in.wake[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("pipe", err)
	}
	// Stop's write must never block.
	if err := unix.SetNonblock(in.wake[1], true); err != nil {
		in.Close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	return in, nil
}

// Read waits until a key is typed or Stop is called, without changing the
// terminal's (shared) file status flags: the shell this CLI runs in reads
// the same terminal after it.
func (in *terminalInput) Read(p []byte) (int, error) {
	for {
		fds := []unix.PollFd{{Fd: int32(in.fd), Events: unix.POLLIN}, {Fd: int32(in.wake[0]), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, os.NewSyscallError("poll", err)
		}
		if fds[1].Revents != 0 {
			return 0, errInputStopped
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(in.fd, p)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return 0, os.NewSyscallError("read", err) // EIO: the terminal hung up
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Stop makes Read return (now, or at its next call).
func (in *terminalInput) Stop() {
	in.stopOnce.Do(func() { unix.Write(in.wake[1], []byte{0}) })
}

// Close releases the pipe; call it once Read has returned.
func (in *terminalInput) Close() error {
	in.closeOnce.Do(func() {
		unix.Close(in.wake[0])
		unix.Close(in.wake[1])
	})
	return nil
}
