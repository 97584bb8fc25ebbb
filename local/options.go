package local

import (
	"time"

	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/imagestore"
)

// Isolation is how a local sandbox is isolated from the host.
type Isolation string

const (
	// IsolationNamespaces (the default) runs each sandbox in fresh user,
	// mount, pid, network, uts, ipc and cgroup namespaces as an
	// unprivileged host uid, with a root built from read-only binds of the
	// host system, a private work dir and /tmp.
	IsolationNamespaces Isolation = "namespaces"
	// IsolationNone runs commands as plain host processes in a temporary
	// directory, with a clean environment but no isolation at all. Only
	// for trusted code, and only when asked for explicitly.
	IsolationNone Isolation = "none"
)

// Options configures the local provider. The zero value gives isolated
// sandboxes with the documented defaults.
type Options struct {
	// Isolation defaults to IsolationNamespaces.
	Isolation Isolation
	// Timeout is the default sandbox lifetime (5 minutes when zero).
	Timeout time.Duration
	// Prestart is how many sandboxes the provider keeps started ahead of
	// demand, so that Create only binds the caller's settings to one
	// (about 1 ms instead of about 15 ms). Zero means 1; negative turns it
	// off. The reserve starts with the first Create, is used only for the
	// provider's default network policy, and Close destroys it. Creates
	// with an image have reserves of their own, started by the first
	// such Create: Prestart sandboxes with the root of the last image
	// named, and Prestart with no root yet (for any image, about 3 ms).
	// They hold no image in use.
	Prestart int
	// Network is the default network policy when CreateOptions.Network is
	// empty: false means loopback only, true the host's network.
	Network bool
	// DiskSize caps everything a sandbox writes: its root, /workspace and
	// /tmp share one private in-memory file system of this size (512 MiB
	// or half of MaxMemory, whichever is less, when zero). Writing past it
	// fails with ENOSPC inside the sandbox. The files count against
	// MaxMemory, so DiskSize must be below it.
	DiskSize int64
	// MaxProcesses caps the processes of one sandbox (a cgroup pids limit
	// and RLIMIT_NPROC; 512 when zero).
	MaxProcesses int
	// MaxCPU caps the CPU time of one sandbox, in CPUs (a cgroup CPU quota;
	// 1 when zero), so a busy sandbox cannot starve the others.
	MaxCPU float64
	// MaxOpenFiles caps open files per process (RLIMIT_NOFILE; 1024 when
	// zero).
	MaxOpenFiles int
	// MaxFileSize caps the size of one file a sandbox writes (RLIMIT_FSIZE;
	// 1 GiB when zero).
	MaxFileSize int64
	// MaxMemory caps the memory of one sandbox, its in-memory files
	// included (a cgroup memory limit; 1 GiB when zero). A process that
	// allocates past it is killed (exit 137, with an error matching
	// driver.ErrOutOfMemory); the sandbox survives. Where cgroups are not
	// writable (not root), an explicit MaxMemory becomes a per-process
	// RLIMIT_AS instead, and Info says so.
	MaxMemory int64

	// Provider-wide caps: what the provider's sandboxes may hold together,
	// prestarted spares included, so that many sandboxes cannot take the
	// host down where one cannot. A Create past one of them fails with an
	// error matching driver.ErrQuotaExceeded that names the cap; destroy
	// sandboxes, lower the per-sandbox limit or raise the cap.

	// MaxSandboxes caps the sandboxes held at once (when zero, 32 per CPU
	// of the host).
	MaxSandboxes int
	// MaxTotalMemory caps the sum of the sandboxes' memory limits (when
	// zero, the host's physical memory), so that the limits together never
	// promise more memory than the host has.
	MaxTotalMemory int64
	// MaxTotalProcesses caps the sum of the sandboxes' process limits
	// (when zero, half of the host's pid_max and threads-max, whichever is
	// less), so that sandboxes cannot exhaust the host's process table.
	MaxTotalProcesses int

	// ImageStore is where images named by CreateOptions.Image are found
	// and pulled to; nil means the store at imagestore.DefaultDir(),
	// opened on the first Create that names an image.
	ImageStore *imagestore.Store
	// ImagePull configures the pulls of images the store does not hold
	// (credentials, transport, progress, size limits); nil means
	// imagestore's defaults.
	ImagePull *imagestore.PullOptions
	// ImageBuildNetwork is the network of the sandboxes that build
	// CreateOptions.ImageSteps (each RUN runs once, in a sandbox of its
	// own, and its result is cached): the zero value (and
	// driver.NetworkHost) gives them the host's network, for the step
	// only, so that "RUN pip install ..." works as on Modal;
	// driver.NetworkNone gives them none. A sandbox created from the
	// built image has the network its own CreateOptions ask for.
	ImageBuildNetwork driver.Network
}
