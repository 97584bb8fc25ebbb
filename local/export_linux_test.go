//go:build linux

package local

// SetHardening turns sandbox confinement and cgroup limits on or off, for
// the benchmark that measures what they cost. Not safe for concurrent use
// with Create.
func SetHardening(on bool) { hardening = on }
