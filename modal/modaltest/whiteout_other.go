//go:build !linux

package modaltest

// isOverlayWhiteout reports false: image stores exist only on Linux.
func isOverlayWhiteout(string) bool { return false }
