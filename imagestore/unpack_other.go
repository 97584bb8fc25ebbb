//go:build !linux

package imagestore

import (
	"context"
	"io"
	"os"
)

func unpackTar(io.Reader, string, *limits) (*unpacked, error) { return nil, errUnsupported }

func syncFS(string) error { return errUnsupported }

func captureUpper(context.Context, *os.File, string, []string, *limits) (*unpacked, error) {
	return nil, errUnsupported
}
