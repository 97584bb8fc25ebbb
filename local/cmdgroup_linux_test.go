//go:build linux

package local

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computesdk-go/compute/local/internal/agent"
)

// v2Mount returns where this host mounts cgroup v2 ("" if nowhere).
func v2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount point (field 5) ... " - " fstype ...
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4]
		}
	}
	return ""
}

// Threat: a command's descendants leaving its process tree, on hosts whose
// sandboxes have their limits on cgroup v2, where commands get threaded
// cgroups (cgroup.threads) instead of v1's pids ones. The sandboxes of the
// CI machines use v1, so this runs the same mechanics on whatever v2
// hierarchy the host mounts (on a hybrid host, the unified one, which has
// no controllers but tracks membership all the same), with a thread of
// this test process as the spawner: a command that double-forks and calls
// setsid is killed whole, and the spawner never stays in its cgroup.
func TestCmdGroupV2(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: making cgroups needs root")
	}
	root := v2Mount()
	if root == "" {
		t.Skip("skipped: no cgroup v2 hierarchy mounted")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var orig string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			orig = filepath.Join(root, p)
		}
	}
	sandbox := filepath.Join(root, "compute-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(sandbox, 0o755); err != nil {
		t.Skipf("skipped: cannot make a v2 cgroup: %v", err)
	}
	defer removeCgroupTree(sandbox)
	self := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(sandbox, "cgroup.procs"), self, 0); err != nil {
		t.Skipf("skipped: cannot move this process into a v2 cgroup: %v", err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), self, 0); err != nil {
			t.Errorf("moving back to %s: %v", orig, err)
		}
	}()

	groups, err := newCmdGroups(sandbox, true)
	if err != nil {
		t.Fatalf("per-command cgroups on v2: %v", err)
	}
	defer groups.close()
	cg, err := groups.take()
	if err != nil {
		t.Fatal(err)
	}
	gf := agent.GroupFilesFrom(cg.files()) // what the agent gets
	defer func() {
		for _, f := range cg.files() {
			f.Close()
		}
	}()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	type started struct {
		pid int
		err error
	}
	ch := make(chan started)
	go func() {
		runtime.LockOSThread() // the spawner's thread moves; keep it to this goroutine
		defer runtime.UnlockOSThread()
		pid, err := agent.ForkIn(gf, "/bin/sh",
			[]string{"sh", "-c", "setsid sh -c 'sleep 1000 & sleep 1001 &'; exec sleep 1002"},
			&syscall.ProcAttr{Env: []string{"PATH=/usr/bin:/bin"}, Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}})
		ch <- started{pid, err}
	}()
	st := <-ch
	if st.err != nil {
		t.Fatal(st.err)
	}
	defer syscall.Wait4(st.pid, nil, 0, nil)
	// Wait until the escapees run: three sleeps in the command's cgroup
	// (a correctness bound, not a performance one).
	sleeps := func() (n int, members []int) {
		members, _ = agent.ReadTids(gf.List)
		for _, tid := range members {
			if c, _ := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/comm"); string(c) == "sleep\n" {
				n++
			}
		}
		return n, members
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, members := sleeps()
		if n == 3 {
			for _, tid := range members {
				if agent.OwnThreads()[tid] {
					t.Errorf("the spawner thread %d stayed in the command's cgroup", tid)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 sleeps in the command's cgroup: %v", n, members)
		}
	}
	if err := agent.KillGroup(gf.List); err != nil {
		t.Fatal(err)
	}
	if members, err := agent.ReadTids(gf.List); err != nil || len(members) != 0 {
		t.Fatalf("after the kill, the command's cgroup holds %v (%v)", members, err)
	}
	cg.done()
	// The worker removes it, in the background (a correctness bound).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(cg.dir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command's cgroup %s was not removed", cg.dir)
		}
	}
}

// The host's cost of a command's own cgroup (v1 pids here, v2 where the
// sandbox's limits are there), in Start and Wait ("take": what an exec
// waits for) and in the background ("make": mkdir, two opens, rmdir).
//
//	go test ./local -run '^$' -bench CommandCgroup
func BenchmarkCommandCgroup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: making cgroups needs root")
	}
	c, err := newCgroup(newID(), resourceLimits{memory: 64 << 20, pids: 64, cpus: 1})
	if err != nil {
		b.Skipf("skipped: no cgroups: %v", err)
	}
	defer c.remove()
	if c.groups == nil {
		b.Skipf("skipped: no per-command cgroups: %v", c.groupsErr)
	}
	b.Run("take", func(b *testing.B) {
		for b.Loop() {
			g, err := c.command()
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range g.files() {
				f.Close()
			}
			g.reuse()
			// Commands come a millisecond or more apart: the worker puts
			// the cgroup back in service meanwhile (untimed here).
			b.StopTimer()
			for {
				c.groups.mu.Lock()
				n := len(c.groups.free)
				c.groups.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(10 * time.Microsecond)
			}
			b.StartTimer()
		}
	})
	b.Run("make", func(b *testing.B) {
		for b.Loop() {
			g, err := c.groups.create()
			if err != nil {
				b.Fatal(err)
			}
			g.closeFiles()
			if err := os.Remove(g.dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}
