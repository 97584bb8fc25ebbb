// Package seccompfilter assembles the seccomp filters that every process
// of a local sandbox runs under: a deny-list of system calls, checks of
// the arguments a deny-list cannot see (clone's namespace flags, socket
// families, terminal ioctls) and a refusal of foreign system call ABIs.
//
// The host assembles them once per process ([Programs]) and sends them
// with each sandbox's configuration; the sandbox's agent only installs
// them on the thread that forks sandboxed processes. The agent therefore
// links no BPF assembler and no system call tables, whose initialiser
// alone took 0.6–0.9 ms and 160 KB of heap at the start of every
// sandbox.
package seccompfilter
