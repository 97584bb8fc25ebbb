//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// mountImage mounts an image root on staging/root and returns its path:
// an overlay of the image's layers (the descriptors, top first), read-only,
// under a writable layer in the staging tmpfs (staging/upper), so that
// what the sandbox writes counts against its disk size and memory and
// reaches neither the host's cache of the image nor another sandbox.
//
// It runs in the sandbox's user and mount namespaces, before the pivot:
// the overlay is the sandbox's own mount, with "userxattr" (whiteouts and
// opaque directories are user.overlay.* attributes in the layers, see
// package imagestore).
func mountImage(cfg *agentproto.Config, staging string, layers []int) (string, error) {
	img := cfg.Image
	if img.Mounts && len(layers) != img.Layers || !img.Mounts && len(img.Dirs) != img.Layers {
		return "", fmt.Errorf("image root: %d layer descriptors and %d directories came, %d announced", len(layers), len(img.Dirs), img.Layers)
	}
	in := func(p string) string { return path.Join(staging, p) }
	for _, d := range []string{"l", "upper", "work", "root"} {
		if err := os.Mkdir(in(d), 0o755); err != nil {
			return "", err
		}
	}
	var lower []string
	for i := range img.Layers {
		dst := in("l/" + strconv.Itoa(i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			return "", err
		}
		if img.Mounts {
			// A detached mount the host made (and idmapped): attach it.
			if err := unix.MoveMount(layers[i], "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return "", fmt.Errorf("image root: attach layer %d: %w", i, err)
			}
		} else {
			// A directory of the caller's: bind it, read-only.
			if err := bindReadOnly(img.Dirs[i], dst); err != nil {
				return "", fmt.Errorf("image root: layer %d: %w", i, err)
			}
		}
		lower = append(lower, dst)
	}
	if len(lower) == 0 {
		// An image without layers: an empty root.
		dst := in("l/empty")
		if err := os.Mkdir(dst, 0o755); err != nil {
			return "", err
		}
		lower = append(lower, dst)
	}
	if cfg.Separate {
		// The root directory of the overlay is the writable layer's: the
		// sandbox's root's, not the agent's.
		if err := unix.Lchown(in("upper"), 0, 0); err != nil {
			return "", err
		}
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + in("upper") + ",workdir=" + in("work") + ",userxattr"
	if len(opts) >= 4096 {
		return "", fmt.Errorf("image root: the image has too many layers (%d) for one overlay mount; flatten it (e.g. docker export | docker import)", len(lower))
	}
	root := in("root")
	if err := unix.Mount("overlay", root, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("image root: mount overlay: %w%s", err, overlayHint(err))
	}
	if img.Capture {
		// An image build step: the host stores what the step writes, read
		// through this descriptor once the sandbox is gone (sendReady).
		fd, err := unix.Open(in("upper"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("image root: the writable layer for the host: %w", err)
		}
		captureFD = fd
	}
	// The overlay holds its own references to the layers: their
	// attachments are no longer needed (and go with the host's tree at
	// the pivot anyway).
	for _, dst := range lower {
		unix.Unmount(dst, unix.MNT_DETACH)
	}
	return root, nil
}

// overlayHint says what a failed overlay mount needs.
func overlayHint(err error) string {
	switch {
	case errors.Is(err, unix.EINVAL):
		return " (this kernel's overlayfs does not take the \"userxattr\" option in a user namespace; image roots need Linux 5.11 or later, 6.8 or later for an image's deleted files and opaque directories, and a writable layer on tmpfs needs 6.6 or later; run without CreateOptions.Image here)"
	case errors.Is(err, unix.ENODEV):
		return " (this kernel has no overlayfs: load the overlay module, or run without CreateOptions.Image)"
	case errors.Is(err, unix.EPERM):
		return " (this kernel does not let user namespaces mount overlayfs; image roots need Linux 5.11 or later)"
	}
	return ""
}

// captureFD is the build step's writable layer, for the host
// (agentproto.ImageRoot.Capture); -1 when there is none.
var captureFD = -1

// sendReady sends the host the reply that the sandbox is ready, with the
// build step's writable layer when there is one, and closes the agent's
// copy of it: nothing the sandbox runs later gets it.
func sendReady(uc *conn, b []byte) error {
	if captureFD < 0 {
		_, err := uc.Write(b)
		return err
	}
	_, err := uc.WriteMsg(b, unix.UnixRights(captureFD))
	unix.Close(captureFD)
	captureFD = -1
	return err
}
