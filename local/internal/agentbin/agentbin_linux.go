//go:build linux

package agentbin

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

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
	if err := copyFromExecutable(fd); err != nil {
		// Through this process's memory instead.
		if err := unix.Ftruncate(fd, 0); err != nil {
			unix.Close(fd)
			return "", fmt.Errorf("agentbin: %w", err)
		}
		if err := writeAll(fd, program); err != nil {
			unix.Close(fd)
			return "", fmt.Errorf("agentbin: write the agent: %w", err)
		}
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("agentbin: seal the agent: %w", err)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), nil
})

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// copyFromExecutable copies the embedded program into fd by the kernel,
// from this process's own executable file, where the program's bytes are
// mapped from: copying them through this process would first fault in
// every page of them (about 1.7 ms of a 3.5 ms copy, on the VMs this is
// measured on; the kernel's copy takes about 1 ms in all). It fails,
// changing nothing the caller relies on, where the bytes are not mapped
// from the executable as it is on disk (a compressed or rewritten
// program).
func copyFromExecutable(fd int) error {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(program)))
	m, err := mappingOf(addr)
	if err != nil {
		return err
	}
	exe, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(exe)
	var st unix.Stat_t
	if err := unix.Fstat(exe, &st); err != nil {
		return err
	}
	if st.Ino != m.inode || unix.Major(st.Dev) != m.major || unix.Minor(st.Dev) != m.minor {
		return errors.New("the embedded agent is not mapped from this program's file")
	}
	off := int64(m.offset + uint64(addr-m.start))
	if off < 0 || off+int64(len(program)) > st.Size {
		return errors.New("the embedded agent lies outside this program's file")
	}
	for left := len(program); left > 0; {
		n, err := unix.Sendfile(fd, exe, &off, left)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("this program's file ended early")
		}
		left -= n
	}
	return nil
}

// mapping is a line of /proc/self/maps: where an address range of this
// process comes from.
type mapping struct {
	start, end   uintptr
	offset       uint64 // in the file
	major, minor uint32 // the file's device
	inode        uint64
}

// mappingOf finds the mapping that holds addr.
func mappingOf(addr uintptr) (mapping, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return mapping{}, err
	}
	for line := range strings.Lines(string(b)) {
		m, ok := parseMapping(line)
		if ok && m.start <= addr && addr < m.end {
			return m, nil
		}
	}
	return mapping{}, errors.New("the embedded agent is in no mapping of /proc/self/maps")
}

// parseMapping reads a /proc/self/maps line:
//
//	00400000-00452000 r-xp 00002000 fe:00 9995503   /path/to/program
func parseMapping(line string) (m mapping, ok bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return m, false
	}
	lo, hi, ok1 := strings.Cut(f[0], "-")
	majS, minS, ok2 := strings.Cut(f[3], ":")
	if !ok1 || !ok2 {
		return m, false
	}
	var errs [6]error
	var start, end, major, minor uint64
	start, errs[0] = strconv.ParseUint(lo, 16, 64)
	end, errs[1] = strconv.ParseUint(hi, 16, 64)
	m.offset, errs[2] = strconv.ParseUint(f[2], 16, 64)
	major, errs[3] = strconv.ParseUint(majS, 16, 32)
	minor, errs[4] = strconv.ParseUint(minS, 16, 32)
	m.inode, errs[5] = strconv.ParseUint(f[4], 10, 64)
	if errors.Join(errs[:]...) != nil || start >= end {
		return mapping{}, false
	}
	m.start, m.end, m.major, m.minor = uintptr(start), uintptr(end), uint32(major), uint32(minor)
	return m, true
}
