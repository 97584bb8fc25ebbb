//go:build linux

package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// cgroupParent is the cgroup under which every sandbox gets its own,
// named <owner pid>-<sandbox id> so that a later provider can remove the
// ones whose owner died without cleaning up.
const cgroupParent = "compute-sandboxes"

// cgroupLimits holds one sandbox's cgroup: memory (the whole sandbox,
// its tmpfs files included), process count and CPU.
type cgroupLimits struct {
	// v1 are the sandbox's directories in the memory, pids and cpu
	// hierarchies of cgroup v1 (in that order), v2 its cgroup on v2.
	v1   []string
	v2   *cgroup2.Manager
	path string // relative to the hierarchy root
	// oomFile and oomKey locate the counter of OOM kills.
	oomFile string
	oomKey  string
	// groups makes per-command cgroups (nil where they fail: groupsErr).
	groups    *cmdGroups
	groupsErr error
}

type resourceLimits struct {
	memory int64   // bytes
	pids   int64   // processes
	cpus   float64 // CPUs
}

// newCgroup creates the sandbox's cgroup, on cgroup v2 where the memory,
// pids and cpu controllers are there, else on v1 (hybrid hosts like the
// project's CI machines keep them on v1). It fails where cgroups are not
// writable (not root, read-only cgroupfs): the caller falls back to
// rlimits and says so.
func newCgroup(id string, l resourceLimits) (*cgroupLimits, error) {
	path := "/" + cgroupParent + "/" + strconv.Itoa(os.Getpid()) + "-" + id
	period := uint64(100000)
	quota := int64(l.cpus * float64(period))
	if cgroups.Mode() == cgroups.Unified {
		if !v2Controllers("memory", "pids", "cpu") {
			return nil, errors.New("cgroup v2 lacks the memory, pids or cpu controller")
		}
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, &cgroup2.Resources{
			Memory: &cgroup2.Memory{Max: &l.memory, Swap: ptr(int64(0))},
			Pids:   &cgroup2.Pids{Max: l.pids},
			CPU:    &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)},
		})
		if err != nil {
			return nil, err
		}
		c := &cgroupLimits{v2: m, path: path, oomFile: filepath.Join("/sys/fs/cgroup", path, "memory.events"), oomKey: "oom_kill"}
		c.groups, c.groupsErr = newCmdGroups(filepath.Join("/sys/fs/cgroup", path), true)
		return c, nil
	}
	// cgroup v1: the files are written directly, a handful of system
	// calls (a library walking /proc/self/mountinfo for every sandbox
	// cost more than the cgroup itself).
	mnt, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	c := &cgroupLimits{path: path, oomKey: "oom_kill"}
	for _, ss := range v1Controllers {
		c.v1 = append(c.v1, mnt[ss]+path)
	}
	mem, pids, cpu := c.v1[0], c.v1[1], c.v1[2]
	c.oomFile = filepath.Join(mem, "memory.oom_control")
	for _, w := range []struct{ dir, file, value string }{
		{mem, "", ""},
		{mem, "memory.limit_in_bytes", strconv.FormatInt(l.memory, 10)},
		// v1 counts TCP buffer memory apart from the rest (a sandbox held
		// 1.35 GiB of it on its own loopback under a 1 GiB limit): cap it
		// at the memory limit too. (v2 counts socket memory in memory.max.)
		{mem, "memory.kmem.tcp.limit_in_bytes", strconv.FormatInt(l.memory, 10)},
		{pids, "", ""},
		{pids, "pids.max", strconv.FormatInt(l.pids, 10)},
		{cpu, "", ""},
		{cpu, "cpu.cfs_period_us", strconv.FormatUint(period, 10)},
		{cpu, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)},
	} {
		if w.file == "" {
			err = os.Mkdir(w.dir, 0o755)
			if errors.Is(err, fs.ErrNotExist) {
				err = os.MkdirAll(w.dir, 0o755) // the first sandbox: compute-sandboxes too
			}
		} else {
			err = os.WriteFile(filepath.Join(w.dir, w.file), []byte(w.value), 0)
		}
		if err != nil {
			c.removeV1()
			return nil, fmt.Errorf("cgroup v1: %w", err)
		}
	}
	c.groups, c.groupsErr = newCmdGroups(pids, false)
	return c, nil
}

// v1Controllers are the cgroup v1 hierarchies a sandbox's cgroup is made
// in, in the order of cgroupLimits.v1.
var v1Controllers = []string{"memory", "pids", "cpu"}

// v1Mounts finds, once, where the hierarchies of v1Controllers are
// mounted (from /proc/self/mountinfo).
var v1Mounts = sync.OnceValues(func() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	mnt := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		// ID parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(g[2], ",") {
			for _, ss := range v1Controllers {
				if opt == ss && mnt[ss] == "" {
					mnt[ss] = unescapeMountPath(f[4])
				}
			}
		}
	}
	if len(mnt) != len(v1Controllers) {
		return nil, errors.New("cgroup v1 lacks the memory, pids or cpu hierarchy")
	}
	return mnt, nil
})

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeV1 removes the sandbox's v1 directories that exist, its
// commands' cgroups (in the pids hierarchy) first; it reports the first
// that would not go (one with processes left in it).
func (c *cgroupLimits) removeV1() error {
	var first error
	for i, d := range c.v1 {
		var err error
		if i == 1 {
			err = removeCgroupTree(d)
		} else {
			err = os.Remove(d)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = err
		}
	}
	return first
}

func ptr[T any](v T) *T { return &v }

func v2Controllers(want ...string) bool {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return false
	}
	have := strings.Fields(string(b))
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func (c *cgroupLimits) version() string {
	if c.v2 != nil {
		return "cgroup v2"
	}
	return "cgroup v1"
}

// socketsLimit says, for Info, how socket buffers are limited.
func (c *cgroupLimits) socketsLimit(memory int64) string {
	if c.v2 != nil {
		return "socket buffers: counted in the memory limit (cgroup v2)"
	}
	return fmt.Sprintf("TCP buffers %s, apart from the memory limit (cgroup v1 kmem.tcp: v1 does not count them in it)", bytesString(memory))
}

// add moves a process (the agent, before it runs anything) into the cgroup.
func (c *cgroupLimits) add(pid int) error {
	if c.v2 != nil {
		return c.v2.AddProc(uint64(pid))
	}
	for _, d := range c.v1 {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return err
		}
	}
	return nil
}

// oomKills returns how many processes the kernel killed for going over
// the memory limit so far.
func (c *cgroupLimits) oomKills() uint64 {
	b, err := os.ReadFile(c.oomFile)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == c.oomKey {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes the cgroup once the sandbox's processes are gone (the
// kernel may take a moment to reap the last of them).
func (c *cgroupLimits) remove() error {
	if c.groups != nil {
		c.groups.close()
	}
	var err error
	for range 50 {
		if c.v2 != nil {
			err = c.v2.Delete()
		} else {
			err = c.removeV1()
		}
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", c.path, err)
}

// sweepCgroups removes the cgroups of sandboxes whose owning process died
// without cleaning up (their processes died with it). Only empty groups can
// be removed, so a live sandbox is never touched.
func sweepCgroups() {
	var roots []string
	if cgroups.Mode() == cgroups.Unified {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		for _, ss := range []string{"memory", "pids", "cpu"} {
			roots = append(roots, "/sys/fs/cgroup/"+ss)
		}
	}
	for _, root := range roots {
		ents, _ := os.ReadDir(filepath.Join(root, cgroupParent))
		for _, e := range ents {
			owner, _, ok := strings.Cut(e.Name(), "-")
			pid, err := strconv.Atoi(owner)
			if !ok || err != nil || pid == os.Getpid() {
				continue
			}
			if _, err := os.Stat("/proc/" + owner); err == nil {
				continue // owner alive
			}
			// Its commands' cgroups first (only empty ones go).
			removeCgroupTree(filepath.Join(root, cgroupParent, e.Name()))
		}
	}
}
