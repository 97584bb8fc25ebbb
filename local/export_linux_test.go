//go:build linux

package local

// SetHardening turns sandbox confinement and cgroup limits on or off, for
// the benchmark that measures what they cost. Not safe for concurrent use
// with Create.
func SetHardening(on bool) { hardening = on }

// Reserves reports how many sandboxes the provider holds ready: with the
// host's root, without a root (for any image), and with the root of the
// image the last image Create named.
func (p *Provider) Reserves() (host, bare, image int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hostReserve.spares), len(p.bareReserve.spares), len(p.imageReserve.spares)
}
