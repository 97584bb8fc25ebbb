package modaltest

import "golang.org/x/sys/unix"

// isOverlayWhiteout reports whether p is an imagestore whiteout: an empty
// file marked with overlayfs's user.overlay.whiteout xattr.
func isOverlayWhiteout(p string) bool {
	_, err := unix.Lgetxattr(p, "user.overlay.whiteout", nil)
	return err == nil
}
