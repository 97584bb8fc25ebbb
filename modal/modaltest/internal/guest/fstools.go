//go:build linux

package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// The fs-tools protocol, as Modal's SDK speaks it (sandbox_fs.go and
// sandbox_fs_utils.go of github.com/modal-labs/modal-client/go): argv[1]
// is {"<Command>": {...}}; on success the result goes to stdout and the
// tool exits 0; on failure stderr holds one JSON object
// {"version":1,"error_kind":K,"message":M[,"detail":D]} and the tool
// exits 1. The error kinds and messages follow Modal's own tool.

// defaultMaxReadFileSize is ReadFile's limit (5 GiB), as in Modal's tool;
// the environment variable below overrides it, for tests.
const (
	defaultMaxReadFileSize = 5 << 30
	maxReadFileSizeEnv     = "_MODAL_TEST_MAX_READ_FILE_SIZE"
)

type pathArgs struct {
	Path string `json:"path"`
}

type fsCommand struct {
	ListFiles     *pathArgs `json:"ListFiles"`
	MakeDirectory *struct {
		Path    string `json:"path"`
		Parents *bool  `json:"parents"`
	} `json:"MakeDirectory"`
	ReadFile  *pathArgs `json:"ReadFile"`
	WriteFile *pathArgs `json:"WriteFile"`
	Remove    *struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	} `json:"Remove"`
	Stat  *pathArgs `json:"Stat"`
	Watch *struct {
		Path        string   `json:"path"`
		Recursive   bool     `json:"recursive"`
		Filter      []string `json:"filter"`
		TimeoutSecs *int     `json:"timeout_secs"`
	} `json:"Watch"`
}

// fsError is a failure reported to the SDK as a JSON error payload.
type fsError struct {
	Kind    string `json:"error_kind"`
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
}

func (e *fsError) Error() string { return e.Kind + ": " + e.Message }

func newErr(kind, msg string) *fsError { return &fsError{Kind: kind, Message: msg} }

var (
	errNotFound   = newErr("NotFound", "path does not exist")
	errNotDir     = newErr("NotDirectory", "a component of the path is not a directory")
	errPermission = newErr("PermissionDenied", "permission denied")
	errIsDir      = newErr("IsDirectory", "expected a file path")
)

func ioErr(err error) *fsError {
	return &fsError{Kind: "Io", Message: "I/O error", Detail: err.Error()}
}

func isPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS)
}

func fsTools(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: %s <command-json>\n", ToolName)
		return 2
	}
	var cmd fsCommand
	if err := json.Unmarshal([]byte(args[0]), &cmd); err != nil {
		fmt.Fprintf(stderr, "%s: invalid command: %v\n", ToolName, err)
		return 2
	}
	var err error
	switch {
	case cmd.ListFiles != nil:
		err = listFiles(cmd.ListFiles.Path, stdout)
	case cmd.MakeDirectory != nil:
		parents := cmd.MakeDirectory.Parents == nil || *cmd.MakeDirectory.Parents
		err = makeDirectory(cmd.MakeDirectory.Path, parents)
	case cmd.ReadFile != nil:
		err = readFile(cmd.ReadFile.Path, stdout)
	case cmd.WriteFile != nil:
		err = writeFile(cmd.WriteFile.Path, stdin)
	case cmd.Remove != nil:
		err = remove(cmd.Remove.Path, cmd.Remove.Recursive)
	case cmd.Stat != nil:
		err = statPath(cmd.Stat.Path, stdout)
	case cmd.Watch != nil:
		w := cmd.Watch
		err = watch(w.Path, w.Recursive, w.Filter, w.TimeoutSecs, stdin, stdout)
	default:
		fmt.Fprintf(stderr, "%s: unknown command: %s\n", ToolName, args[0])
		return 2
	}
	if err == nil {
		return 0
	}
	var fe *fsError
	if !errors.As(err, &fe) {
		fe = ioErr(err)
	}
	b, _ := json.Marshal(struct {
		Version int `json:"version"`
		*fsError
	}{1, fe})
	stderr.Write(b)
	return 1
}

// fileEntry is the tool's description of a file (FileInfo in the SDK).
type fileEntry struct {
	Name          string  `json:"name"`
	Path          string  `json:"path"`
	Type          string  `json:"type"`
	Size          int64   `json:"size"`
	Mode          uint32  `json:"mode"`
	Permissions   string  `json:"permissions"`
	Owner         string  `json:"owner"`
	Group         string  `json:"group"`
	ModifiedTime  float64 `json:"modified_time"`
	SymlinkTarget *string `json:"symlink_target,omitempty"`
}

// newEntry describes p from its lstat.
func newEntry(name, p string, st *syscall.Stat_t) fileEntry {
	e := fileEntry{
		Name:         name,
		Path:         p,
		Type:         "file",
		Size:         st.Size,
		Mode:         st.Mode,
		Permissions:  fmt.Sprintf("%04o", st.Mode&0o7777),
		Owner:        userName(st.Uid),
		Group:        groupName(st.Gid),
		ModifiedTime: float64(st.Mtim.Sec) + float64(st.Mtim.Nsec)/1e9,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		e.Type = "symlink"
		if target, err := os.Readlink(p); err == nil {
			e.SymlinkTarget = &target
		}
	case syscall.S_IFDIR:
		e.Type = "directory"
	}
	return e
}

func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return g.Name
	}
	return id
}

func lstat(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func listFiles(dir string, stdout io.Writer) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		return errNotDir
	case err != nil && isPermission(err):
		return errPermission
	case err != nil:
		return errNotFound
	case !fi.IsDir():
		return newErr("IsFile", "expected a directory path")
	}
	f, err := os.Open(dir)
	if err != nil {
		if isPermission(err) {
			return errPermission
		}
		return ioErr(err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		if isPermission(err) {
			return errPermission
		}
		return ioErr(err)
	}
	sort.Strings(names)
	abs, _ := filepath.Abs(dir)
	entries := make([]fileEntry, 0, len(names))
	for _, name := range names {
		p := filepath.Join(abs, name)
		st, err := lstat(p)
		if err != nil {
			continue // gone since the listing
		}
		entries = append(entries, newEntry(name, p, st))
	}
	return writeJSON(stdout, entries)
}

func makeDirectory(p string, parents bool) error {
	var err error
	if parents {
		if fi, serr := os.Stat(p); serr == nil && !fi.IsDir() {
			return newErr("PathAlreadyExists", "path already exists")
		}
		err = os.MkdirAll(p, 0o755)
	} else {
		err = os.Mkdir(p, 0o755)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return newErr("PathAlreadyExists", "path already exists")
	case errors.Is(err, syscall.ENOTDIR):
		return errNotDir
	case errors.Is(err, fs.ErrNotExist):
		return newErr("NotFound", "parent directory does not exist")
	case isPermission(err):
		return errPermission
	}
	return ioErr(err)
}

func maxReadFileSize() int64 {
	if v := os.Getenv(maxReadFileSizeEnv); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return defaultMaxReadFileSize
}

func readFile(p string, stdout io.Writer) error {
	fi, err := os.Stat(p)
	if err != nil {
		if isPermission(err) {
			return errPermission
		}
		return errNotFound
	}
	if fi.IsDir() {
		return errIsDir
	}
	if limit := maxReadFileSize(); fi.Size() > limit {
		return newErr("FileTooLarge", fmt.Sprintf("file is %d bytes, which exceeds the %d byte limit", fi.Size(), limit))
	}
	f, err := os.Open(p)
	if err != nil {
		if isPermission(err) {
			return errPermission
		}
		return ioErr(err)
	}
	defer f.Close()
	if _, err := io.Copy(stdout, f); err != nil {
		return ioErr(err)
	}
	return nil
}

func writeFile(p string, stdin io.Reader) error {
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return errIsDir
	}
	if parent := path.Dir(p); parent != "" {
		if fi, err := os.Stat(parent); err == nil && !fi.IsDir() {
			return newErr("AlreadyExists", "a component of the path is not a directory")
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			switch {
			case errors.Is(err, syscall.ENOTDIR):
				return errNotDir
			case isPermission(err):
				return errPermission
			}
			return ioErr(err)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		switch {
		case isPermission(err):
			return errPermission
		case errors.Is(err, syscall.EISDIR):
			return errIsDir
		}
		return ioErr(err)
	}
	_, err = io.Copy(f, stdin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ioErr(err)
	}
	return nil
}

func remove(p string, recursive bool) error {
	st, err := lstat(p)
	if err != nil {
		return errNotFound
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		err = syscall.Unlink(p)
	} else if recursive {
		err = os.RemoveAll(p)
	} else {
		err = syscall.Rmdir(p)
	}
	switch {
	case err == nil:
		return nil
	case isPermission(err):
		return errPermission
	case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
		return newErr("DirectoryNotEmpty", "directory is not empty")
	}
	return &fsError{Kind: "Io", Message: err.Error()}
}

func statPath(p string, stdout io.Writer) error {
	st, err := lstat(p)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return errNotFound
	case errors.Is(err, syscall.ENOTDIR):
		return errNotDir
	case err != nil && isPermission(err):
		return errPermission
	case err != nil:
		return ioErr(err)
	}
	name := strings.TrimRight(p, "/")
	if name != "" {
		name = path.Base(name)
	}
	return writeJSON(stdout, newEntry(name, p, st))
}
