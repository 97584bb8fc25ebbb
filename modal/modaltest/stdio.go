package modaltest

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// output is one stdout or stderr stream: everything written, kept whole
// so that readers can start (and restart) at any offset, also after the
// process has exited.
type output struct {
	mu      sync.Mutex
	data    []byte
	closed  bool
	changed chan struct{} // closed and replaced on every change
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return len(p), nil
	}
	o.data = append(o.data, p...)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// Close marks the end of the stream.
func (o *output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.changed)
		o.changed = make(chan struct{})
	}
	return nil
}

// read returns up to max bytes from off. With nothing there it reports
// whether the stream is over, or returns a channel closed on the next
// change.
func (o *output) read(off uint64, max int) (data []byte, eof bool, wait <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if off < uint64(len(o.data)) {
		end := min(uint64(len(o.data)), off+uint64(max))
		return o.data[off:end], false, nil
	}
	if o.closed {
		return nil, true, nil
	}
	return nil, false, o.changed
}

// stream sends the output from off as chunks of at most max bytes until
// it ends (nil) or ctx is done (its error).
func (o *output) stream(ctx context.Context, off uint64, max int, send func(data []byte, off uint64) error) error {
	for {
		data, eof, wait := o.read(off, max)
		switch {
		case len(data) > 0:
			if err := send(data, off); err != nil {
				return err
			}
			off += uint64(len(data))
		case eof:
			return nil
		default:
			select {
			case <-wait:
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
	}
}

// maxPendingInput bounds the stdin bytes buffered for a process that has
// not read them yet; writers wait beyond it.
const maxPendingInput = 8 << 20

var (
	errInputClosed = status.Error(codes.FailedPrecondition, "stdin is already closed")
	errExited      = status.Error(codes.FailedPrecondition, "the process has exited")
)

// input is a process's stdin: writes at offsets (so that retried and
// resumed writes apply once), buffered until the process reads them.
type input struct {
	mu      sync.Mutex
	pending []byte
	written uint64 // bytes accepted, the offset of the next one
	eof     bool   // no more input
	dead    bool   // nobody will read any more
	changed chan struct{}
}

func newInput() *input { return &input{changed: make(chan struct{})} }

func (in *input) broadcastLocked() {
	close(in.changed)
	in.changed = make(chan struct{})
}

// Read is the process's end.
func (in *input) Read(p []byte) (int, error) {
	for {
		in.mu.Lock()
		if len(in.pending) > 0 {
			n := copy(p, in.pending)
			in.pending = in.pending[n:]
			if len(in.pending) == 0 {
				in.pending = nil
			}
			in.broadcastLocked()
			in.mu.Unlock()
			return n, nil
		}
		if in.eof || in.dead {
			in.mu.Unlock()
			return 0, io.EOF
		}
		wait := in.changed
		in.mu.Unlock()
		<-wait
	}
}

// write applies data at offset (bytes before written are already there
// and skipped) and, with eof, closes the input. A write after the reader
// is gone fails with errExited when strict, and is dropped otherwise.
func (in *input) write(ctx context.Context, offset uint64, data []byte, eof, strict bool) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead {
		if strict {
			return errExited
		}
		return nil
	}
	if offset > in.written {
		return status.Errorf(codes.InvalidArgument, "stdin write at offset %d, but only %d bytes were written", offset, in.written)
	}
	if skip := in.written - offset; skip < uint64(len(data)) {
		data = data[skip:]
	} else {
		data = nil
	}
	if len(data) > 0 && in.eof {
		return errInputClosed
	}
	for len(data) > 0 {
		for len(in.pending) >= maxPendingInput && !in.dead {
			wait := in.changed
			in.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				in.mu.Lock()
				return status.FromContextError(ctx.Err()).Err()
			}
			in.mu.Lock()
		}
		if in.dead {
			if strict {
				return errExited
			}
			return nil
		}
		n := min(len(data), maxPendingInput)
		in.pending = append(in.pending, data[:n]...)
		in.written += uint64(n)
		data = data[n:]
		in.broadcastLocked()
	}
	if eof && !in.eof {
		in.eof = true
		in.broadcastLocked()
	}
	return nil
}

// state is what TaskExecStdinStatus reports.
func (in *input) state() (written uint64, closed bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.written, in.eof
}

// kill makes the reader's end return EOF and later writes fail.
func (in *input) kill() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.dead {
		in.dead = true
		in.pending = nil
		in.broadcastLocked()
	}
}
