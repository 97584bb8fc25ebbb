package local

import (
	"os"
	"sync/atomic"
	"time"
)

// Sweep removes what sandboxes left on the host when their owning process
// died without cleaning up (a SIGKILL, a crash): their cgroups (when run
// as root) and the empty directories their roots were built on. Their
// processes died with the owner. Only leftovers of owners that are gone
// are touched, and only empty ones can be removed, so live sandboxes, of
// this process or another, are safe.
//
// New sweeps, and so does Create, at most once a minute (in the
// background); call Sweep to clean up sooner, say from a command or after
// restarting a crashed service.
func Sweep() {
	sweepStaging()
	if os.Geteuid() == 0 {
		sweepCgroups()
	}
}

// sweepInterval is how often Create sweeps at most.
const sweepInterval = time.Minute

// lastSweep is when the last sweep started, in Unix nanoseconds.
var lastSweep atomic.Int64

// sweepNow sweeps in this goroutine and notes the time.
func sweepNow() {
	lastSweep.Store(time.Now().UnixNano())
	Sweep()
}

// sweepSometimes starts a sweep in the background unless one started less
// than sweepInterval ago.
func sweepSometimes() {
	last := lastSweep.Load()
	now := time.Now().UnixNano()
	if now-last < int64(sweepInterval) || !lastSweep.CompareAndSwap(last, now) {
		return
	}
	go Sweep()
}
