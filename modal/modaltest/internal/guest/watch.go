//go:build linux

package guest

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"
)

// watchInterval is how often Watch looks at the files. Watch polls: it
// sees creations, modifications, removals and renames (by inode), not
// accesses, and changes that cancel out between two looks go unseen.
const watchInterval = 50 * time.Millisecond

// fileState is what Watch compares between two looks.
type fileState struct {
	dev, ino uint64
	size     int64
	mtime    int64
	typ      uint32
}

// watch reports changes under p as NDJSON lines {"event_type","paths"}
// until stdin is closed or the timeout passes.
func watch(p string, recursive bool, filter []string, timeoutSecs *int, stdin io.Reader, stdout io.Writer) error {
	fi, err := os.Stat(p)
	if err != nil {
		if isPermission(err) {
			return errPermission
		}
		return errNotFound
	}
	root, err := filepath.EvalSymlinks(p)
	if err != nil {
		return errNotFound
	}
	dir := fi.IsDir()

	var deadline <-chan time.Time
	if timeoutSecs != nil {
		if *timeoutSecs <= 0 {
			return nil
		}
		t := time.NewTimer(time.Duration(*timeoutSecs) * time.Second)
		defer t.Stop()
		deadline = t.C
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin)
		close(stop)
	}()

	allowed := func(kind string) bool { return filter == nil || slices.Contains(filter, kind) }
	emit := func(kind string, paths ...string) error {
		if !allowed(kind) {
			return nil
		}
		b, _ := json.Marshal(struct {
			EventType string   `json:"event_type"`
			Paths     []string `json:"paths"`
		}{kind, paths})
		_, err := stdout.Write(append(b, '\n'))
		return err
	}

	prev := scan(root, dir, recursive)
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-deadline:
			return nil
		case <-tick.C:
		}
		cur := scan(root, dir, recursive)
		if err := diff(prev, cur, emit); err != nil {
			return nil // the reader went away
		}
		prev = cur
	}
}

// scan looks at the watched files: root itself for a file, the entries of
// root (all of its tree when recursive) for a directory.
func scan(root string, dir, recursive bool) map[string]fileState {
	out := map[string]fileState{}
	add := func(p string) {
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			out[p] = fileState{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), typ: st.Mode & syscall.S_IFMT}
		}
	}
	if !dir {
		add(root)
		return out
	}
	if !recursive {
		names, _ := readNames(root)
		for _, n := range names {
			add(filepath.Join(root, n))
		}
		return out
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fs.SkipDir
		}
		if p != root {
			add(p)
		}
		return nil
	})
	return out
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// diff reports what changed between two scans, in a stable order.
func diff(prev, cur map[string]fileState, emit func(kind string, paths ...string) error) error {
	type key struct{ dev, ino uint64 }
	curByInode := map[key]string{}
	for p, s := range cur {
		curByInode[key{s.dev, s.ino}] = p
	}
	handled := map[string]bool{}
	var removed []string
	for p := range prev {
		if _, ok := cur[p]; !ok {
			removed = append(removed, p)
		}
	}
	sort.Strings(removed)
	for _, r := range removed {
		s := prev[r]
		to, ok := curByInode[key{s.dev, s.ino}]
		if ok && !handled[to] {
			if old, existed := prev[to]; !existed || old.ino != s.ino || old.dev != s.dev {
				handled[to] = true
				if err := emit("Rename", r, to); err != nil {
					return err
				}
				continue
			}
		}
		if err := emit("Remove", r); err != nil {
			return err
		}
	}
	var paths []string
	for p := range cur {
		if !handled[p] {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		s := cur[p]
		old, existed := prev[p]
		switch {
		case !existed:
			if err := emit("Create", p); err != nil {
				return err
			}
		case old != s && s.typ != syscall.S_IFDIR:
			// A directory's own mtime moves with its entries, which are
			// reported themselves.
			if err := emit("Modify", p); err != nil {
				return err
			}
		}
	}
	return nil
}
