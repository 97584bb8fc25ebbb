package local

import "time"

// reserve is one of a provider's reserves of sandboxes started ahead of
// demand (Options.Prestart): Creates take spares from it, and a
// goroutine of its own refills it in the background. The provider has
// three: with the host's root, without a root (for any image), and with
// the root of the image the last image Create named. Its fields are
// guarded by the provider's mu.
type reserve struct {
	spares  []*sandbox
	filling bool // a fill goroutine is running or about to
	// image is what the image reserve's spares are started with (nil:
	// none yet, and nothing is started); a change makes the spares
	// being started for the previous one unwanted.
	image *sandboxImage
	// start starts one spare, with image (nil but in the image
	// reserve); it is called without the lock.
	start func(image *sandboxImage) (*sandbox, error)
}

// takeSpare returns one of r's spares, or nil, and starts replacing it
// a moment later, so that starting it (a burst of CPU) does not compete
// with the caller's first commands. The caller holds p.mu.
func (p *Provider) takeSpare(r *reserve) *sandbox {
	var s *sandbox
	if n := len(r.spares); n > 0 {
		s, r.spares = r.spares[n-1], r.spares[:n-1]
	}
	p.refill(r, refillDelay)
	return s
}

// refill starts filling r after delay, unless it is full or being
// filled. The caller holds p.mu.
func (p *Provider) refill(r *reserve, delay time.Duration) {
	if r.filling || len(r.spares) >= p.prestart() {
		return
	}
	r.filling = true
	p.filling.Add(1) // Close waits for it
	if delay > 0 {
		time.AfterFunc(delay, func() { p.fill(r) })
	} else {
		go p.fill(r)
	}
}

// fill starts spares until r holds Prestart. A failure stops it
// quietly: Create then starts sandboxes itself and reports the error.
// It stops too while Creates give up spares' places (startMakingRoom).
func (p *Provider) fill(r *reserve) {
	defer p.filling.Done()
	for {
		p.mu.Lock()
		image := r.image
		if p.closed || len(r.spares) >= p.prestart() || p.makingRoom > 0 || r == &p.imageReserve && image == nil {
			r.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		s, err := r.start(image)
		p.mu.Lock()
		switch {
		case err != nil || p.closed:
			r.filling = false
			p.mu.Unlock()
			if s != nil {
				s.destroy()
			}
			return
		case r.image != image:
			p.mu.Unlock()
			s.destroy() // the reserve changed image meanwhile
		default:
			r.spares = append(r.spares, s)
			p.mu.Unlock()
		}
	}
}

// refillDelay is how long after handing out a spare the provider starts
// its replacement.
const refillDelay = 25 * time.Millisecond
