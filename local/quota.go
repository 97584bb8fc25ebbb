package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/computesdk-go/compute/driver"
)

// Defaults of the provider-wide caps, relative to the host.
const (
	// DefaultMaxSandboxesPerCPU is MaxSandboxes' default per CPU of the
	// host.
	DefaultMaxSandboxesPerCPU = 32
)

// quota counts what a provider's sandboxes hold together (started ones,
// spares included) against its provider-wide caps.
type quota struct {
	maxSandboxes int
	maxMemory    int64
	maxProcs     int
	perMemory    int64 // one sandbox's memory limit
	perProcs     int   // one sandbox's process limit

	mu        sync.Mutex
	sandboxes int
	memory    int64
	procs     int
}

// setQuotaDefaults fills the zero caps of opts from the host and checks
// that one sandbox fits in them. opts' per-sandbox limits must already
// have their defaults.
func setQuotaDefaults(opts *Options) error {
	if opts.MaxSandboxes < 0 || opts.MaxTotalMemory < 0 || opts.MaxTotalProcesses < 0 {
		return errors.New("local: negative provider-wide cap in Options")
	}
	if opts.MaxSandboxes == 0 {
		opts.MaxSandboxes = DefaultMaxSandboxesPerCPU * runtime.NumCPU()
	}
	from := ""
	if opts.MaxTotalMemory == 0 {
		opts.MaxTotalMemory = defaultTotalMemory()
		from = ", this host's memory"
	}
	if opts.MaxMemory > opts.MaxTotalMemory {
		return fmt.Errorf("local: MaxMemory (%s) is above MaxTotalMemory (%s%s): not one sandbox would fit; lower MaxMemory or raise MaxTotalMemory", bytesString(opts.MaxMemory), bytesString(opts.MaxTotalMemory), from)
	}
	from = ""
	if opts.MaxTotalProcesses == 0 {
		opts.MaxTotalProcesses = defaultTotalProcesses()
		from = ", half of this host's process table"
	}
	if opts.MaxProcesses > opts.MaxTotalProcesses {
		return fmt.Errorf("local: MaxProcesses (%d) is above MaxTotalProcesses (%d%s): not one sandbox would fit; lower MaxProcesses or raise MaxTotalProcesses", opts.MaxProcesses, opts.MaxTotalProcesses, from)
	}
	return nil
}

func newQuota(opts Options) *quota {
	return &quota{
		maxSandboxes: opts.MaxSandboxes,
		maxMemory:    opts.MaxTotalMemory,
		maxProcs:     opts.MaxTotalProcesses,
		perMemory:    opts.MaxMemory,
		perProcs:     opts.MaxProcesses,
	}
}

// reservation is one sandbox's share of the quota, held from before its
// agent starts until its resources are released.
type reservation struct {
	q    *quota
	once sync.Once
}

// reserve takes one sandbox's share, or fails with an error matching
// driver.ErrQuotaExceeded that names the cap it would pass.
func (q *quota) reserve() (*reservation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	held := fmt.Sprintf("%d sandboxes held, prestarted spares included", q.sandboxes)
	switch {
	case q.sandboxes+1 > q.maxSandboxes:
		return nil, fmt.Errorf("local: %s: another would pass MaxSandboxes (%d); destroy sandboxes or raise local.Options.MaxSandboxes: %w",
			held, q.maxSandboxes, driver.ErrQuotaExceeded)
	case q.memory+q.perMemory > q.maxMemory:
		return nil, fmt.Errorf("local: %s, with %s of memory limits: another %s would pass MaxTotalMemory (%s); destroy sandboxes, lower local.Options.MaxMemory or raise local.Options.MaxTotalMemory: %w",
			held, bytesString(q.memory), bytesString(q.perMemory), bytesString(q.maxMemory), driver.ErrQuotaExceeded)
	case q.procs+q.perProcs > q.maxProcs:
		return nil, fmt.Errorf("local: %s, with %d processes allowed: another %d would pass MaxTotalProcesses (%d); destroy sandboxes, lower local.Options.MaxProcesses or raise local.Options.MaxTotalProcesses: %w",
			held, q.procs, q.perProcs, q.maxProcs, driver.ErrQuotaExceeded)
	}
	q.sandboxes++
	q.memory += q.perMemory
	q.procs += q.perProcs
	return &reservation{q: q}, nil
}

// release gives the share back; later calls do nothing.
func (r *reservation) release() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		q := r.q
		q.mu.Lock()
		q.sandboxes--
		q.memory -= q.perMemory
		q.procs -= q.perProcs
		q.mu.Unlock()
	})
}

// defaultTotalMemory is the host's physical memory, in whole MiB: the
// sandboxes' limits together never promise more memory than there is.
// (Limits are caps, not reservations: a tighter default would refuse
// sandboxes that mostly use a fraction of theirs.) Where the host's memory
// is unknown, no cap.
func defaultTotalMemory() int64 {
	total, ok := memTotal()
	if !ok {
		return 1<<63 - 1
	}
	return total &^ (1<<20 - 1)
}

// memTotal reads MemTotal from /proc/meminfo.
func memTotal() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10, err == nil && kb > 0
		}
	}
	return 0, false
}

// defaultTotalProcesses is half of the host's process table: the lesser
// of kernel.pid_max and kernel.threads-max (every thread takes a pid, and
// the pids limit counts threads).
func defaultTotalProcesses() int {
	n := 1 << 22 // the kernel's largest pid_max
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		if b, err := os.ReadFile(f); err == nil {
			if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && v > 0 {
				n = min(n, v)
			}
		}
	}
	return n / 2
}
