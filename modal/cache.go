package modal

import (
	"context"
	"sync"
	"time"
)

// fetchTimeout bounds one fetch (an image build can take minutes).
const fetchTimeout = 20 * time.Minute

// cache holds values that are fetched once (apps, built images, secrets,
// volumes): concurrent callers for one key share one fetch, a failed fetch
// is not remembered, and a caller whose ctx ends stops waiting without
// cancelling the fetch for the others.
type cache[V any] struct {
	mu sync.Mutex
	m  map[string]*entry[V]
}

type entry[V any] struct {
	done chan struct{}
	v    V
	err  error
}

func (c *cache[V]) get(ctx context.Context, key string, fetch func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*entry[V]{}
	}
	e := c.m[key]
	if e == nil {
		e = &entry[V]{done: make(chan struct{})}
		c.m[key] = e
		go func() {
			// Detached from the first caller: the others may still want it.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			e.v, e.err = fetch(fctx)
			cancel()
			if e.err != nil {
				c.mu.Lock()
				delete(c.m, key)
				c.mu.Unlock()
			}
			close(e.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.v, e.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// set stores a value fetched elsewhere.
func (c *cache[V]) set(key string, v V) {
	e := &entry[V]{done: make(chan struct{}), v: v}
	close(e.done)
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*entry[V]{}
	}
	c.m[key] = e
	c.mu.Unlock()
}
