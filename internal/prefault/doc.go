// Package prefault makes the Go heap's first pages resident in one system
// call, instead of a page fault each as the program first touches them.
// Importing it is all there is to it: its init does the work, early
// (it depends on little, so it initialises before most packages).
//
// A page fault costs 0.5–1 µs on bare metal but 10–25 µs on the
// paravirtualised VMs that CI machines and many clouds run (measured:
// 11 µs a fault against 0.5 µs a page with MADV_POPULATE_WRITE, on the
// 2-CPU VMs this project is measured on), and a Go program faults in
// hundreds of heap pages before main: the compute CLI about 650 of its
// 1100 faults, `compute version` 30 → 21 ms with this package. Only
// programs that start often and live briefly import it: the compute CLI
// and the sandbox agent. A library must not, as the heap is its host
// program's; it costs a few MiB of resident memory (the heap's mapping
// at the time, at most 8 MiB), which such a program mostly touches
// anyway.
//
// Where the kernel cannot populate (Linux before 5.14, other systems) it
// does nothing.
package prefault
