package driver

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing/fstest"
)

// Limits of the files an image's COPY steps copy from
// CreateOptions.ImageContext, all steps together: they travel with the
// options to a remote server (whose request bodies are bounded) and, on
// Modal, inside the image's definition.
const (
	MaxImageContextBytes = 16 << 20
	MaxImageContextFiles = 10000
)

// CopyFile is one file or directory a COPY step puts in an image.
type CopyFile struct {
	// Path is where it goes: an absolute, clean path in the image.
	Path string
	// Mode is its permission bits, with fs.ModeDir for a directory.
	Mode fs.FileMode
	// Data is a file's content.
	Data []byte
}

// ParseCopy splits a COPY step's argument (as ParseImageStep returns it)
// into its sources, paths relative to the build context, and its
// destination. It takes Dockerfile's two forms, "src... dest" and the
// JSON array ["src", ..., "dest"] (for names with spaces). Sources may
// be glob patterns (path.Match). Flags (--from, --chown, --chmod) are
// not supported.
func ParseCopy(arg string) (srcs []string, dest string, err error) {
	var fields []string
	if strings.HasPrefix(arg, "[") {
		if err := json.Unmarshal([]byte(arg), &fields); err != nil {
			return nil, "", fmt.Errorf("COPY [...] is not a JSON array of strings: %v", err)
		}
	} else {
		fields = strings.Fields(arg)
	}
	if len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		return nil, "", fmt.Errorf("COPY %s is not supported; write COPY src... dest", fields[0])
	}
	if len(fields) < 2 {
		return nil, "", fmt.Errorf("COPY needs a source and a destination (COPY src... dest)")
	}
	srcs, dest = fields[:len(fields)-1], fields[len(fields)-1]
	for _, src := range srcs {
		if err := checkCopySource(src); err != nil {
			return nil, "", err
		}
	}
	if strings.ContainsRune(dest, 0) || dest == "" {
		return nil, "", fmt.Errorf("COPY destination %q is not a path", dest)
	}
	return srcs, dest, nil
}

func checkCopySource(src string) error {
	if src == "" || strings.ContainsRune(src, 0) || strings.Contains(src, `\`) {
		return fmt.Errorf("COPY source %q is not a slash-separated path", src)
	}
	if path.IsAbs(src) {
		return fmt.Errorf("COPY source %q is absolute; sources are paths relative to the build context (CreateOptions.ImageContext)", src)
	}
	if c := path.Clean(src); c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Errorf("COPY source %q climbs out of the build context", src)
	}
	if _, err := path.Match(src, ""); err != nil {
		return fmt.Errorf("COPY source %q is not a valid pattern: %v", src, err)
	}
	return nil
}

// ResolveCopy returns what the COPY step with argument arg copies from
// fsys, parents before children: as Dockerfile's COPY, a file source goes
// to dest, or into it when dest ends in "/"; a directory source's
// contents go into dest; several sources (or a pattern) need a dest
// ending in "/". A relative dest is taken from dir, the working directory
// the steps before set ("" for "/"). Symbolic links in fsys are refused,
// as is more than MaxImageContextBytes or MaxImageContextFiles.
func ResolveCopy(fsys fs.FS, arg, dir string) ([]CopyFile, error) {
	srcs, dest, err := ParseCopy(arg)
	if err != nil {
		return nil, err
	}
	if fsys == nil {
		return nil, fmt.Errorf("COPY needs the files it copies from: set CreateOptions.ImageContext (e.g. os.DirFS(dir)), or --context with the CLI")
	}
	intoDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		if dir == "" {
			dir = "/"
		}
		dest = path.Join(dir, dest)
	}
	dest = path.Clean(dest)
	var names []string
	for _, src := range srcs {
		src = path.Clean(src)
		if strings.ContainsAny(src, `*?[`) {
			m, err := fs.Glob(fsys, src)
			if err != nil {
				return nil, fmt.Errorf("COPY source %q: %v", src, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("COPY source %q matches no file in the build context", src)
			}
			names = append(names, m...)
			if len(srcs) == 1 && !intoDir && len(m) > 1 {
				return nil, fmt.Errorf("COPY %s copies %d files: its destination must be a directory ending in /", src, len(m))
			}
			continue
		}
		names = append(names, src)
	}
	if len(srcs) > 1 && !intoDir {
		return nil, fmt.Errorf("COPY with several sources needs a destination directory ending in / (not %q)", dest)
	}
	var out []CopyFile
	var bytes int64
	add := func(f CopyFile) error {
		if len(out) >= MaxImageContextFiles {
			return fmt.Errorf("COPY copies more than %d files; put them in the base image, or copy an archive", MaxImageContextFiles)
		}
		out = append(out, f)
		return nil
	}
	read := func(name string, fi fs.FileInfo, to string) error {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("COPY source %q is not a regular file or directory (links and devices are not copied)", name)
		}
		if bytes+fi.Size() > MaxImageContextBytes {
			return fmt.Errorf("COPY copies more than %d bytes; put large files in the base image, or fetch them in a RUN step", MaxImageContextBytes)
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("COPY source %q: %w", name, err)
		}
		if bytes += int64(len(data)); bytes > MaxImageContextBytes {
			return fmt.Errorf("COPY copies more than %d bytes; put large files in the base image, or fetch them in a RUN step", MaxImageContextBytes)
		}
		return add(CopyFile{Path: to, Mode: fi.Mode().Perm(), Data: data})
	}
	for _, name := range names {
		fi, err := fs.Stat(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("COPY source %q is not in the build context: %w", name, err)
		}
		if !fi.IsDir() {
			to := dest
			if intoDir || len(names) > 1 {
				to = path.Join(dest, path.Base(name))
			}
			if err := read(name, fi, to); err != nil {
				return nil, err
			}
			continue
		}
		err = fs.WalkDir(fsys, name, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("COPY source %q: %w", p, err)
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(p, name), "/")
			if name == "." {
				rel = p
				if p == "." {
					rel = ""
				}
			}
			to := path.Join(dest, rel)
			if d.Type()&fs.ModeSymlink != 0 {
				return fmt.Errorf("COPY source %q is a symbolic link; links are not copied (copy what it points to)", p)
			}
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("COPY source %q: %w", p, err)
			}
			if d.IsDir() {
				return add(CopyFile{Path: to, Mode: fs.ModeDir | fi.Mode().Perm()})
			}
			return read(p, fi, to)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ContextFile is a file or directory of an image's build context as it
// travels to a provider elsewhere (see ImageContextFiles).
type ContextFile struct {
	// Path is its path in the context (slash-separated, relative).
	Path string
	// Mode is its permission bits, with fs.ModeDir for a directory.
	Mode fs.FileMode
	// Data is a file's content.
	Data []byte
}

// ImageContextFiles returns the files and directories of fsys that the
// COPY steps among steps copy, for a client to send with a create to a
// provider elsewhere (which rebuilds the context with ContextFS); nil
// when no step copies. The same limits as ResolveCopy's apply.
func ImageContextFiles(steps []string, fsys fs.FS) ([]ContextFile, error) {
	seen := map[string]bool{}
	var out []ContextFile
	var bytes int64
	add := func(p string, fi fs.FileInfo) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		f := ContextFile{Path: p, Mode: fi.Mode().Perm()}
		switch {
		case fi.IsDir():
			f.Mode |= fs.ModeDir
		case fi.Mode().IsRegular():
			if bytes+fi.Size() > MaxImageContextBytes {
				return fmt.Errorf("COPY copies more than %d bytes; put large files in the base image, or fetch them in a RUN step", MaxImageContextBytes)
			}
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return fmt.Errorf("COPY source %q: %w", p, err)
			}
			bytes += int64(len(data))
			f.Data = data
		default:
			return fmt.Errorf("COPY source %q is not a regular file or directory (links and devices are not copied)", p)
		}
		if len(out) >= MaxImageContextFiles {
			return fmt.Errorf("COPY copies more than %d files; put them in the base image, or copy an archive", MaxImageContextFiles)
		}
		out = append(out, f)
		return nil
	}
	for i, step := range steps {
		instr, arg, err := ParseImageStep(step)
		if err != nil || instr != "COPY" {
			continue
		}
		if fsys == nil {
			return nil, fmt.Errorf("compute: image step %d (%.80q): COPY needs the files it copies from: set CreateOptions.ImageContext: %w", i+1, step, ErrInvalid)
		}
		srcs, _, _ := ParseCopy(arg)
		for _, src := range srcs {
			src = path.Clean(src)
			names := []string{src}
			if strings.ContainsAny(src, `*?[`) {
				if names, err = fs.Glob(fsys, src); err != nil {
					return nil, fmt.Errorf("COPY source %q: %v", src, err)
				}
			}
			for _, name := range names {
				err := fs.WalkDir(fsys, name, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return fmt.Errorf("COPY source %q: %w", p, err)
					}
					if d.Type()&fs.ModeSymlink != 0 && p != name {
						return fmt.Errorf("COPY source %q is a symbolic link; links are not copied (copy what it points to)", p)
					}
					fi, err := fs.Stat(fsys, p)
					if err != nil {
						return fmt.Errorf("COPY source %q: %w", p, err)
					}
					return add(p, fi)
				})
				if err != nil {
					return nil, err
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ContextFS is the build context that files (from ImageContextFiles)
// make, for CreateOptions.ImageContext.
func ContextFS(files []ContextFile) fs.FS {
	m := fstest.MapFS{}
	for _, f := range files {
		if p := path.Clean(f.Path); fs.ValidPath(p) && p != "." {
			m[p] = &fstest.MapFile{Data: f.Data, Mode: f.Mode}
		}
	}
	return m
}
