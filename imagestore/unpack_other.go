//go:build !linux

package imagestore

import "io"

func unpackTar(io.Reader, string, *limits) (*unpacked, error) { return nil, errUnsupported }

func syncFS(string) error { return errUnsupported }
