//go:build linux

package local

// Image roots: a sandbox whose root is an OCI image's layers (from
// package imagestore) under a writable layer of its own. The host finds
// or pulls the image, holds it in use for the sandbox's life, opens its
// layers and hands them to the agent with the configuration; the agent
// mounts the overlay inside the sandbox's namespaces (package agent,
// image_linux.go).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// sandboxImage is an image a sandbox's root is made of, held in use
// (imagestore.Store.Use) until release.
type sandboxImage struct {
	ref     string
	im      *imagestore.Image
	release func()
	capture bool // an image build step's sandbox: its writable layer is stored (imagesteps_linux.go)
}

// imageStore returns the provider's image store, opening the default one
// on first use.
func (p *Provider) imageStore() (*imagestore.Store, error) {
	p.imgMu.Lock()
	defer p.imgMu.Unlock()
	if p.images != nil {
		return p.images, nil
	}
	dir, err := imagestore.DefaultDir()
	if err != nil {
		return nil, fmt.Errorf("local: image cache: %w (set COMPUTE_CACHE_DIR, or local.Options.ImageStore)", err)
	}
	st, err := imagestore.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("local: image cache: %w", err)
	}
	p.images = st
	return st, nil
}

// openImage finds ref in the image store, pulling it when it is not
// there (the pull is the host process's, with the host's network and
// credentials, whatever the sandbox's network policy), checks that a
// local sandbox can run it, and marks it in use. The caller releases it.
func (p *Provider) openImage(ctx context.Context, ref string) (*sandboxImage, error) {
	st, err := p.imageStore()
	if err != nil {
		return nil, err
	}
	if po := p.opts.ImagePull; po != nil && po.AllowRegistry != nil {
		// Also for an image the store holds already.
		if reg, err := imagestore.Registry(ref); err == nil && reg != "" {
			if err := po.AllowRegistry(reg); err != nil {
				return nil, fmt.Errorf("local: image %s: %w: %v", ref, imagestore.ErrRegistryRefused, err)
			}
		}
	}
	im, err := st.Get(ref)
	if errors.Is(err, imagestore.ErrNotFound) {
		im, err = st.Pull(ctx, ref, p.opts.ImagePull)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("local: image %s: %w", ref, err)
	}
	if len(im.Layers) > agentproto.MaxImageLayers {
		return nil, fmt.Errorf("local: image %s has %d layers, more than the %d a local sandbox mounts; flatten it (e.g. docker export | docker import): %w", ref, len(im.Layers), agentproto.MaxImageLayers, driver.ErrUnsupported)
	}
	if _, err := imageUserOf(ref, im); err != nil { // image_user_linux.go
		return nil, err
	}
	release, err := st.Use(ctx, im)
	if err != nil {
		// Removed between Get and Use: pull it again, once.
		if !errors.Is(err, imagestore.ErrNotFound) {
			return nil, fmt.Errorf("local: image %s: %w", ref, err)
		}
		if im, err = st.Pull(ctx, ref, p.opts.ImagePull); err == nil {
			release, err = st.Use(ctx, im)
		}
		if err != nil {
			return nil, fmt.Errorf("local: image %s: %w", ref, err)
		}
	}
	// Released by the sandbox's end, or by a Create that failed: once.
	return &sandboxImage{ref: ref, im: im, release: sync.OnceFunc(release)}, nil
}

// env is the image's environment over the sandbox's base environment:
// the image's PATH (and anything else it sets) wins over the defaults;
// CreateOptions.Env, applied later, wins over both.
func (img *sandboxImage) env(base map[string]string) map[string]string {
	if u, _ := img.runAs(); u != nil { // HOME and USER of an image's user; an error stops the start (checkUser)
		u.env(base)
	}
	for _, kv := range img.im.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			base[k] = v
		}
	}
	return base
}

// workingDir is the image's working directory, or "" for none.
func (img *sandboxImage) workingDir() string {
	wd := img.im.Config.WorkingDir
	if wd == "" || !path.IsAbs(wd) {
		return ""
	}
	return path.Clean(wd)
}

// openImageFile opens a regular file of the image, as the top-most layer
// that has it holds it, resolving inside the layer only (a layer's links
// lead nowhere on the host). A whiteout hides it. Opaque directories
// below the top are not looked through: good enough for /etc/passwd.
func openImageFile(im *imagestore.Image, name string) (*os.File, error) {
	for i := len(im.Layers) - 1; i >= 0; i-- {
		dir, err := unix.Open(im.Layers[i].Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Openat2(dir, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
		unix.Close(dir)
		if err != nil {
			continue
		}
		if _, err := unix.Fgetxattr(fd, "user.overlay.whiteout", nil); err == nil {
			unix.Close(fd)
			return nil, os.ErrNotExist
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return nil, os.ErrNotExist
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	return nil, os.ErrNotExist
}

// layerFiles opens an image's layers for the agent, top first. As root
// (the sandbox's code then runs as a host uid of its own, to which the
// cache's root-owned files do not belong), each layer is a detached
// mount (open_tree) idmapped to the agent's user namespace
// (mount_setattr MOUNT_ATTR_IDMAP), read-only, nosuid, nodev: a file the
// cache holds as host uid 0 appears as the sandbox's root, with no chown
// and nothing written to the cache. Without root, the cache's files are
// the caller's and the sandbox's root is the caller's uid already: the
// layers go as plain directories. The caller closes the descriptors.
func layerFiles(img *sandboxImage, agentPid int) (fds []int, mounts bool, err error) {
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			fds = nil
		}
	}()
	mounts = os.Geteuid() == 0
	var userns int = -1
	if mounts {
		userns, err = unix.Open("/proc/"+strconv.Itoa(agentPid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, false, fmt.Errorf("local: image root: sandbox's user namespace: %w", err)
		}
		defer unix.Close(userns)
	}
	layers := img.im.Layers
	for i := len(layers) - 1; i >= 0; i-- {
		dir := layers[i].Dir
		if !mounts {
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fds, false, fmt.Errorf("local: image %s: layer %s: %w", img.ref, dir, err)
			}
			fds = append(fds, fd)
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fds, true, fmt.Errorf("local: image %s: layer %s: open_tree: %w", img.ref, dir, err)
		}
		fds = append(fds, fd)
		attr := &unix.MountAttr{
			Attr_set:  unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
			Userns_fd: uint64(userns),
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
			return fds, true, fmt.Errorf("local: image %s: idmapped mount of layer %s: %w (image roots as root need idmapped mounts: Linux 5.12 or later and a cache on a file system that supports them, such as ext4, xfs, btrfs or tmpfs)", img.ref, dir, err)
		}
	}
	return fds, mounts, nil
}

// takeImageSpare returns a sandbox started ahead of demand with img's
// root, if one is ready, and starts replacing it; a Create for another
// image than the reserve's makes the reserve that image's. The spare
// mounted its layers without holding the image in use, so it is handed
// out only where the layer directories are the very ones it mounted
// (the overlay pins their inodes: directories removed and pulled again
// are new ones); the Create's img, which holds the image in use, becomes
// the sandbox's.
func (p *Provider) takeImageSpare(network bool, img *sandboxImage) *sandbox {
	if p.opts.Prestart < 0 || network != p.opts.Network {
		return nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	r := &p.imageReserve
	if r.image == nil || r.image.im.ID != img.im.ID {
		if stale := r.spares; len(stale) > 0 {
			p.filling.Add(1) // Close waits for it
			go func() {
				defer p.filling.Done()
				for _, s := range stale {
					s.destroy()
				}
			}()
		}
		r.spares = nil
		r.image = &sandboxImage{ref: img.ref, im: img.im, release: func() {}}
	}
	s := p.takeSpare(r)
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	if !s.mounted(img) {
		s.destroy()
		return nil
	}
	s.setImage(img)
	return s
}

// fileID identifies a directory: its device and inode.
type fileID struct{ dev, ino uint64 }

// mounted reports whether s's root was built from img's layer
// directories as they are now.
func (s *sandbox) mounted(img *sandboxImage) bool {
	layers := img.im.Layers
	if len(s.layerIDs) != len(layers) {
		return false
	}
	for i, l := range layers {
		var st unix.Stat_t
		if err := unix.Stat(l.Dir, &st); err != nil {
			return false
		}
		// layerIDs are top first.
		if s.layerIDs[len(layers)-1-i] != (fileID{uint64(st.Dev), st.Ino}) {
			return false
		}
	}
	return true
}
