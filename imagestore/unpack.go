package imagestore

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// ErrHostileLayer is returned (wrapped, with the entry and the reason)
// when a layer holds an entry that would reach outside its own tree: a
// path climbing out with "..", a hardlink to something not in the layer,
// a directory that is a dangling symlink. The pull fails and nothing of
// it is kept.
var ErrHostileLayer = errors.New("imagestore: hostile layer refused")

// ErrTooLarge is returned when an image's layers unpack to more bytes or
// entries than PullOptions.MaxSize or MaxEntries allow.
var ErrTooLarge = errors.New("imagestore: image over the size limit")

// ErrDigestMismatch is returned when a layer is not what its digest says:
// its compressed bytes do not hash to the manifest's digest, or its
// unpacked stream not to the config's diff_id.
var ErrDigestMismatch = errors.New("imagestore: layer does not match its digest")

// Owner is a path of a layer whose tar entry named an owner other than
// root (see Layer.Owners).
type Owner struct {
	Path string `json:"path"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// unpacked is what unpacking a layer found.
type unpacked struct {
	size   int64 // bytes of regular files
	owners []Owner
	notes  []string
}

// limits is the budget of one pull, shared by its layers: bytes of tar
// stream read, bytes of files written (more than the stream for a sparse
// file) and entries.
type limits struct {
	bytes, disk, entries atomic.Int64 // left
	maxBytes, maxEntries int64
}

func newLimits(maxBytes, maxEntries int64) *limits {
	l := &limits{maxBytes: maxBytes, maxEntries: maxEntries}
	l.bytes.Store(maxBytes)
	l.disk.Store(maxBytes)
	l.entries.Store(maxEntries)
	return l
}

// write counts n bytes of files written.
func (l *limits) write(n int64) error {
	if l.disk.Add(-n) < 0 {
		return fmt.Errorf("%w: its files hold more than %d bytes (PullOptions.MaxSize, --max-size)", ErrTooLarge, l.maxBytes)
	}
	return nil
}

// budgetReader counts what a file's content takes on disk.
type budgetReader struct {
	r   io.Reader
	lim *limits
}

func (b budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		if lerr := b.lim.write(int64(n)); lerr != nil {
			return n, lerr
		}
	}
	return n, err
}

func (l *limits) take(n int64) error {
	if l.bytes.Add(-n) < 0 {
		return fmt.Errorf("%w: its layers hold more than %d bytes (PullOptions.MaxSize, --max-size)", ErrTooLarge, l.maxBytes)
	}
	return nil
}

func (l *limits) entry() error {
	if l.entries.Add(-1) < 0 {
		return fmt.Errorf("%w: its layers hold more than %d entries (PullOptions.MaxEntries)", ErrTooLarge, l.maxEntries)
	}
	return nil
}

// meter counts what passes through it against the budget, hashes it,
// reports progress and stops when ctx ends.
type meter struct {
	ctx      context.Context
	r        io.Reader
	h        hash.Hash
	lim      *limits
	n        int64
	max      int64 // > 0: more than this many bytes is an error
	blob     bool  // reads a blob that go-containerregistry may verify
	progress func(int64)
}

func (m *meter) Read(p []byte) (int, error) {
	if err := m.ctx.Err(); err != nil {
		return 0, context.Cause(m.ctx)
	}
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF && m.blob && isVerifyError(err) {
		// go-containerregistry checks registry blobs itself, at their end.
		err = fmt.Errorf("%w: %v", ErrDigestMismatch, err)
	}
	if n > 0 {
		m.h.Write(p[:n])
		m.n += int64(n)
		if m.lim != nil {
			if lerr := m.lim.take(int64(n)); lerr != nil {
				return n, lerr
			}
		}
		if m.max > 0 && m.n > m.max {
			return n, fmt.Errorf("%w: the blob is longer than the %d bytes its descriptor says", ErrDigestMismatch, m.max)
		}
		if m.progress != nil {
			m.progress(int64(n))
		}
	}
	return n, err
}

func (m *meter) digest() string { return "sha256:" + hex.EncodeToString(m.h.Sum(nil)) }

// layerSource is one layer's stream and what it must hash to.
type layerSource struct {
	open       func() (io.ReadCloser, error)
	compressed bool   // the stream is the blob (digest checked) rather than the tar
	digest     string // the blob's digest ("" when compressed is false)
	size       int64  // the blob's size, when known (> 0)
	diffID     string // the tar's digest, from the config
}

// unpackLayer reads src, unpacks its tar into rootDir and checks both
// digests; any error leaves rootDir for the caller to remove.
func unpackLayer(ctx context.Context, src layerSource, rootDir string, lim *limits, progress func(int64)) (*unpacked, error) {
	rc, err := src.open()
	if err != nil {
		if isVerifyError(err) {
			err = fmt.Errorf("%w: %v", ErrDigestMismatch, err)
		}
		return nil, err
	}
	defer rc.Close()
	blob := &meter{ctx: ctx, r: rc, h: sha256.New(), progress: progress, blob: true}
	var tarStream io.Reader = blob
	var closeDecoder func()
	if src.compressed {
		blob.max = src.size
		br := bufio.NewReaderSize(blob, 64<<10)
		magic, _ := br.Peek(4)
		switch {
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("reading the layer: %w", err)
			}
			tarStream, closeDecoder = zr, func() { zr.Close() }
		case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
			if err != nil {
				return nil, fmt.Errorf("reading the layer: %w", err)
			}
			tarStream, closeDecoder = zr, zr.Close
		default:
			tarStream = br
		}
	} else {
		blob.progress = nil
	}
	if closeDecoder != nil {
		defer closeDecoder()
	}
	// The budget counts the unpacked stream: what lands on disk, plus
	// whatever an endless or padded tar would make us read.
	tarm := &meter{ctx: ctx, r: tarStream, h: sha256.New(), lim: lim}
	if !src.compressed {
		tarm.progress = progress
	}
	u, err := unpackTar(tarm, rootDir, lim)
	if err != nil {
		return nil, err
	}
	// The digests cover the whole streams, past the tar's end marker.
	if _, err := io.Copy(io.Discard, tarm); err != nil {
		return nil, fmt.Errorf("reading the layer: %w", err)
	}
	if src.compressed {
		if _, err := io.Copy(io.Discard, blob); err != nil {
			return nil, fmt.Errorf("reading the layer: %w", err)
		}
		if got := blob.digest(); got != src.digest {
			return nil, fmt.Errorf("%w: the blob %s hashes to %s", ErrDigestMismatch, src.digest, got)
		}
	}
	if got := tarm.digest(); got != src.diffID {
		return nil, fmt.Errorf("%w: the layer's tar hashes to %s, but the image config says %s", ErrDigestMismatch, got, src.diffID)
	}
	return u, nil
}

// isVerifyError says whether err is go-containerregistry's own digest or
// size check failing (its type is internal to that module).
func isVerifyError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "error verifying sha256 checksum") || strings.Contains(msg, "error verifying size") ||
		strings.Contains(msg, "does not match expected size")
}
