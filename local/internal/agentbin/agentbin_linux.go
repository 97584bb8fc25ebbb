//go:build linux

package agentbin

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotEmbedded is returned by Path where this build embeds no agent
// (an architecture other than amd64 and arm64).
var ErrNotEmbedded = errors.New("agentbin: no embedded agent for this architecture")

// minFD is the lowest descriptor the memory file may have: the host
// starts the agent with its control socket moved to descriptor 3 before
// the exec, which must not land on the program it execs.
const minFD = 10

// Path returns a path the host can execute to start the agent, valid in
// this process and in children forked from it until they exec: the
// embedded program in a memory file, sealed so that nothing can change
// it, made on the first call and kept for the life of the process.
func Path() (string, error) { return memfdPath() }

var memfdPath = sync.OnceValues(func() (string, error) {
	if len(program) == 0 {
		return "", ErrNotEmbedded
	}
	// MFD_EXEC: where vm.memfd_noexec makes memory files
	// non-executable by default, ask for an executable one (kernels
	// older than 6.3 do not know the flag and are asked again without).
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("compute-agent", flags|unix.MFD_EXEC)
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate("compute-agent", flags)
	}
	if err != nil {
		return "", fmt.Errorf("agentbin: memfd_create: %w", err)
	}
	if fd < minFD {
		high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minFD)
		unix.Close(fd)
		if err != nil {
			return "", fmt.Errorf("agentbin: %w", err)
		}
		fd = high
	}
	// A raw descriptor, not an *os.File, whose finalizer could close it:
	// it stays open for the life of the process.
	for b := program; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return "", fmt.Errorf("agentbin: write the agent: %w", err)
		}
		b = b[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("agentbin: seal the agent: %w", err)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), nil
})
