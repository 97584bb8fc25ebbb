//go:build !linux

package imagestore

import "context"

func lockFile(context.Context, string, bool) (func(), error) { return nil, errUnsupported }

func tryLockFile(string, bool) (func(), bool, error) { return nil, false, errUnsupported }

const supported = false
