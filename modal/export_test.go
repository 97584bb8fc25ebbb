package modal

import "time"

// PooledIDs returns the ids of the sandboxes waiting in p's pool
// (Config.Prestart), oldest first.
func PooledIDs(p *Provider) []string {
	pl := p.s.pool
	if pl == nil {
		return nil
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	ids := make([]string, len(pl.ready))
	for i, e := range pl.ready {
		ids[i] = e.sb.SandboxID
	}
	return ids
}

// SetPoolMaxAge sets how long a pooled sandbox waits before it is
// replaced, for the providers made from now on, until the returned
// function restores it. Tests that use it must not run in parallel.
func SetPoolMaxAge(d time.Duration) (restore func()) {
	old := poolMaxAge
	poolMaxAge = d
	return func() { poolMaxAge = old }
}
