//go:build linux

package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupParent is the cgroup under which every sandbox gets its own,
// named <owner pid>-<sandbox id> so that a later provider can remove the
// ones whose owner died without cleaning up.
const cgroupParent = "compute-sandboxes"

// cgroupLimits holds one sandbox's cgroup: memory (the whole sandbox,
// its tmpfs files included), process count and CPU.
type cgroupLimits struct {
	v1   cgroup1.Cgroup
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
	var pidsDir string // the sandbox's cgroup in the pids hierarchy
	hierarchy := func() ([]cgroup1.Subsystem, error) {
		all, err := cgroup1.Default()
		if err != nil {
			return nil, err
		}
		var want []cgroup1.Subsystem
		for _, s := range all {
			switch s.Name() {
			case cgroup1.Memory, cgroup1.Pids, cgroup1.Cpu:
				want = append(want, s)
			}
			if p, ok := s.(interface{ Path(string) string }); ok && s.Name() == cgroup1.Pids {
				pidsDir = p.Path(path)
			}
		}
		if len(want) != 3 {
			return nil, errors.New("cgroup v1 lacks the memory, pids or cpu hierarchy")
		}
		return want, nil
	}
	// v1 counts TCP buffer memory apart from the rest (a sandbox held
	// 1.35 GiB of it on its own loopback under a 1 GiB limit): cap it at
	// the memory limit too. (v2 counts socket memory in memory.max.)
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &l.memory, KernelTCP: &l.memory},
		Pids:   &specs.LinuxPids{Limit: &l.pids},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}, cgroup1.WithHierarchy(hierarchy))
	if err != nil {
		return nil, err
	}
	c := &cgroupLimits{v1: cg, path: path, oomFile: filepath.Join("/sys/fs/cgroup/memory", path, "memory.oom_control"), oomKey: "oom_kill"}
	c.groupsErr = errors.New("no pids hierarchy found")
	if pidsDir != "" {
		c.groups, c.groupsErr = newCmdGroups(pidsDir, false)
	}
	return c, nil
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
	return c.v1.Add(cgroup1.Process{Pid: pid})
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
			err = c.v1.Delete()
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
