//go:build linux

package local

// SetCommandCgroups turns per-command cgroups on or off, for the benchmark
// that measures what they cost. Not safe for concurrent use with Start.
func SetCommandCgroups(on bool) { commandCgroups = on }
