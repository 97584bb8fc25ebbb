package modaltest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/computesdk-go/compute/imagestore"
)

// ImageFiles says whether a sandbox made from a registry image sees the
// image's files, or this machine's programs (Options.ImageFiles).
type ImageFiles string

const (
	// ImageFilesHost runs every sandbox on this machine's programs (the
	// host's /usr, read-only, through the local provider), whatever image
	// it names: the zero value, so a test server depends neither on the
	// network nor on what this machine's image store holds.
	ImageFilesHost ImageFiles = ""
	// ImageFilesCached gives a sandbox its registry image's files when
	// the image store already holds the image (compute image pull puts it
	// there), and never reaches a registry; other images run on this
	// machine's programs.
	ImageFilesCached ImageFiles = "cached"
	// ImageFilesPull is ImageFilesCached that also pulls the images the
	// store lacks, as Modal does, with Options.Local.ImagePull's
	// credentials and transport; an image that cannot be pulled runs on
	// this machine's programs.
	ImageFilesPull ImageFiles = "pull"
)

// openImageStore opens the image store of the server's own local
// provider when Options.ImageFiles asks for image files, and says in the
// log why a server runs every image on this machine's programs.
func (s *Server) openImageStore() {
	mode := s.opts.ImageFiles
	switch {
	case mode == ImageFilesHost:
		return
	case mode != ImageFilesCached && mode != ImageFilesPull:
		s.log.Warn("modaltest: unknown Options.ImageFiles; sandboxes run this machine's programs, not their images' files", "image_files", string(mode))
		s.opts.ImageFiles = ImageFilesHost
		return
	case s.opts.Provider != nil:
		s.log.Warn("modaltest: Options.ImageFiles needs the server's own local provider; with Options.Provider, sandboxes run that provider's default root, not their images' files")
		s.opts.ImageFiles = ImageFilesHost
		return
	case s.opts.Local.ImageStore != nil:
		return
	}
	dir, err := imagestore.DefaultDir()
	var st *imagestore.Store
	if err == nil {
		st, err = imagestore.Open(dir)
	}
	if err != nil {
		s.log.Warn("modaltest: no image store, so sandboxes run this machine's programs, not their images' files", "error", err)
		s.opts.ImageFiles = ImageFilesHost
		return
	}
	s.opts.Local.ImageStore = st
}

// resolveImageFiles finds the files of a registry image (the store's
// image id, for CreateOptions.Image), pulling them when the server may;
// "" means the image runs on this machine's programs, and the log says
// why.
func (s *Server) resolveImageFiles(ctx context.Context, tag string) string {
	log := s.log.With("image", tag)
	if s.opts.ImageFiles == ImageFilesHost {
		log.Info("modaltest: the image's files are not used: its sandboxes run this machine's programs (Options.ImageFiles is host)")
		return ""
	}
	st := s.opts.Local.ImageStore
	im, err := st.Get(tag)
	if errors.Is(err, imagestore.ErrNotFound) && s.opts.ImageFiles == ImageFilesPull {
		ctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		im, err = st.Pull(ctx, tag, s.opts.Local.ImagePull)
	}
	if err != nil {
		hint := ""
		if errors.Is(err, imagestore.ErrNotFound) {
			hint = fmt.Sprintf(" (pull it with: compute image pull %s)", tag)
		}
		log.Warn("modaltest: the image's files are not used: its sandboxes run this machine's programs"+hint, "error", err)
		return ""
	}
	log.Info("modaltest: the image's sandboxes see its files", "id", im.ID, "store", st.Dir())
	return im.ID
}

// stripImageFiles removes from a snapshot of a sandbox with an image root
// the entries that are the image's own files, unchanged (same type, mode,
// size, modification second and link target as the image's topmost copy):
// the snapshot's image keeps the root image, so they would only be
// restored onto themselves, and an image's files can be more than a
// snapshot may carry. What cannot be compared is kept.
func (s *Server) stripImageFiles(rootImage string, snap []byte) []byte {
	st := s.opts.Local.ImageStore
	if st == nil {
		return snap
	}
	im, err := st.Get(rootImage)
	if err != nil {
		return snap
	}
	dirs := im.LayerDirs()
	slices.Reverse(dirs) // top first
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(snap))
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return snap
		}
		if inImage(dirs, hdr) {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return snap
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return snap
		}
	}
	if err := tw.Close(); err != nil {
		return snap
	}
	return out.Bytes()
}

// inImage reports whether hdr is the same as the file its path names in
// the topmost of layers that has it. A path through a symbolic link of a
// layer is never followed (it is not compared, so kept).
func inImage(layers []string, hdr *tar.Header) bool {
	name := strings.Trim(path.Clean("/"+hdr.Name), "/")
	if name == "" {
		return false
	}
	parts := strings.Split(name, "/")
	for _, layer := range layers {
		p := layer
		var fi os.FileInfo
		ok := true
		for i, part := range parts {
			p = filepath.Join(p, part)
			st, err := os.Lstat(p)
			if err != nil {
				ok = false
				break
			}
			if i < len(parts)-1 && !st.IsDir() {
				return false // a link or file on the way: not compared
			}
			fi = st
		}
		if !ok {
			continue
		}
		if fi.Mode().IsRegular() && fi.Size() == 0 {
			if isOverlayWhiteout(p) {
				return false // removed by this layer
			}
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		want, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return false
		}
		if want.Typeflag != hdr.Typeflag || want.Mode != hdr.Mode || want.Linkname != hdr.Linkname {
			return false
		}
		if hdr.Typeflag == tar.TypeDir {
			return true
		}
		return want.Size == hdr.Size && want.ModTime.Unix() == hdr.ModTime.Unix()
	}
	return false
}
