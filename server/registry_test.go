package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// counting is a provider that counts the sandboxes alive at its core:
// from the moment a Create succeeds to the return of their Destroy. It
// remembers the most alive at once, and can fail Destroys.
type counting struct {
	driver.Provider
	mu       sync.Mutex
	alive    map[string]bool
	most     int
	failNext atomic.Int32 // Destroys to fail
}

func newCounting(p driver.Provider) *counting {
	return &counting{Provider: p, alive: map[string]bool{}}
}

func (c *counting) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	ps, err := c.Provider.Create(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.alive[ps.ID()] = true
	c.most = max(c.most, len(c.alive))
	c.mu.Unlock()
	return ps, nil
}

func (c *counting) Destroy(ctx context.Context, id string) error {
	if c.failNext.Add(-1) >= 0 {
		return errors.New("backend refused the destroy")
	}
	c.failNext.Store(0)
	err := c.Provider.Destroy(ctx, id)
	if err == nil {
		c.mu.Lock()
		delete(c.alive, id)
		c.mu.Unlock()
	}
	return err
}

func (c *counting) counts() (alive, most int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.alive), c.most
}

// TestRegistryRacingCreatesAndLists is the regression test for "the
// server forgets live sandboxes" (issue 9, finding 4): lists and prunes
// took a snapshot of the provider and dropped every registry entry
// missing from it, sandboxes created meanwhile included (3 of 60 lost,
// 404 afterwards, destroy a no-op), and the cap counted without them (107
// accepted under a cap of 100). Here many creates race many lists and
// destroys: every accepted create stays reachable, the provider never
// holds more than the cap, and nothing is left behind.
func TestRegistryRacingCreatesAndLists(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name                   string
		limit, creators, lists int
	}{
		{"UnderTheCap", 60, 60, 8}, // every create must stay
		{"PastTheCap", 12, 40, 8},  // exactly the cap accepted
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			racingCreatesAndLists(t, c.limit, c.creators, c.lists)
		})
	}
}

func racingCreatesAndLists(t *testing.T, limit, creators, lists int) {
	// Small sandboxes, and provider-wide caps above the server's: the
	// server's cap is the one under test.
	p := newCounting(newLocalWith(t, local.Options{MaxMemory: 64 << 20, MaxProcesses: 64, MaxSandboxes: 4 * creators, MaxTotalMemory: 1 << 40}))
	e := start(t, p, server.Options{MaxSandboxes: limit})

	var (
		mu       sync.Mutex
		accepted []string
		refused  int
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	for range lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, m := e.seed(map[string]any{"action": "compute.sandbox.list"}); code != 200 {
					t.Errorf("list: %d %v", code, m)
					return
				}
				var l wire.SandboxList
				if code := e.v1("GET", "/sandboxes", nil, &l); code != 200 {
					t.Errorf("v1 list: %d", code)
					return
				}
			}
		}()
	}
	var creates sync.WaitGroup
	for i := range creators {
		creates.Add(1)
		go func() {
			defer creates.Done()
			var code int
			var id string
			if i%2 == 0 {
				var m map[string]any
				code, m = e.seed(map[string]any{"action": "compute.sandbox.create"})
				id, _ = m["sandboxId"].(string)
			} else {
				var info wire.SandboxInfo
				code = e.v1("POST", "/sandboxes", wire.CreateRequest{}, &info)
				if code == http.StatusCreated {
					code, id = 200, info.ID
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch code {
			case 200:
				accepted = append(accepted, id)
			case 429:
				refused++
			default:
				t.Errorf("create: status %d", code)
			}
		}()
	}
	creates.Wait()
	close(stop)
	wg.Wait()

	if want := min(limit, creators); len(accepted) != want || refused != creators-want {
		t.Errorf("%d creates accepted, %d refused; want %d accepted (the cap is %d) and %d refused", len(accepted), refused, want, limit, creators-want)
	}
	if _, most := p.counts(); most > limit {
		t.Errorf("the provider held %d sandboxes at once; want at most the cap, %d", most, limit)
	}
	// Every accepted sandbox is still the server's, after all those lists.
	for _, id := range accepted {
		if code, m := e.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": id}); code != 200 {
			t.Errorf("getInfo %s after the racing lists: %d %v; want 200 (the registry lost it)", id, code, m)
		}
	}
	m := e.seedOK(map[string]any{"action": "compute.sandbox.list"})
	if n := len(m["sandboxes"].([]any)); n != len(accepted) {
		t.Errorf("list has %d sandboxes; want the %d accepted", n, len(accepted))
	}
	if st := e.srv.Stats(); st.Sandboxes != len(accepted) {
		t.Errorf("the server holds %d sandboxes; want %d", st.Sandboxes, len(accepted))
	}

	// Destroys race creates: the cap still holds, and once all are
	// destroyed the provider has none left.
	var race sync.WaitGroup
	for _, id := range accepted {
		race.Add(2)
		go func() {
			defer race.Done()
			e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
		}()
		go func() {
			defer race.Done()
			code, m := e.seed(map[string]any{"action": "compute.sandbox.create"})
			if code == 200 {
				mu.Lock()
				accepted = append(accepted, m["sandboxId"].(string))
				mu.Unlock()
			}
		}()
	}
	race.Wait()
	if _, most := p.counts(); most > limit {
		t.Errorf("with destroys racing creates the provider held %d sandboxes at once; want at most %d", most, limit)
	}
	for _, id := range accepted {
		e.seedOK(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
	}
	if alive, _ := p.counts(); alive != 0 || e.srv.Stats().Sandboxes != 0 {
		t.Errorf("after destroying every sandbox the provider holds %d and the server %d; want 0", alive, e.srv.Stats().Sandboxes)
	}
}

// TestRegistryReapsLostSandboxes checks that a sandbox the registry
// cannot destroy at once is not lost (issue 9, finding 4: a sandbox the
// registry drops must still be reaped): a failed Destroy keeps it
// counted against the cap and unusable, and the reaper destroys it
// later; a sandbox that ended on its own is destroyed too before it is
// dropped.
func TestRegistryReapsLostSandboxes(t *testing.T) {
	t.Parallel()
	p := newCounting(newLocal(t))
	e := start(t, p, server.Options{MaxSandboxes: 1, IdleTimeout: 2 * time.Second})
	id := e.create()
	p.failNext.Store(1)
	code, m := e.seed(map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
	if code != 500 || m["success"] != false {
		t.Errorf("destroy that the provider refused: %d %v; want 500", code, m)
	}
	if code, _ := e.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": id}); code != 404 {
		t.Errorf("getInfo of a sandbox being destroyed: %d; want 404", code)
	}
	if code, m := e.seed(map[string]any{"action": "compute.sandbox.create"}); code != 429 {
		t.Errorf("create while the undestroyed sandbox holds the only place: %d %v; want 429", code, m)
	}
	// The reaper tries again (after 10 s) and destroys it.
	eventually(t, time.Minute, "the reaper destroys the sandbox whose destroy failed", func() bool {
		alive, _ := p.counts()
		return alive == 0 && e.srv.Stats().Sandboxes == 0
	})
	e.create()
}

// TestRegistryEndedSandbox checks that a sandbox whose lifetime ran out
// leaves the registry (and frees its place) only once the provider says
// so for that sandbox.
func TestRegistryEndedSandbox(t *testing.T) {
	t.Parallel()
	p := newCounting(newLocal(t))
	e := start(t, p, server.Options{MaxSandboxes: 2})
	short := e.seedOK(map[string]any{"action": "compute.sandbox.create", "options": map[string]any{"timeout": 500}})["sandboxId"].(string)
	long := e.create()
	eventually(t, time.Minute, "the expired sandbox leaves the list", func() bool {
		m := e.seedOK(map[string]any{"action": "compute.sandbox.list"})
		ids := fmt.Sprint(m["sandboxes"])
		return len(m["sandboxes"].([]any)) == 1 && !strings.Contains(ids, short)
	})
	if code, _ := e.seed(map[string]any{"action": "compute.sandbox.getInfo", "sandboxId": long}); code != 200 {
		t.Errorf("getInfo of the live sandbox: %d; want 200", code)
	}
	if alive, _ := p.counts(); alive != 1 {
		t.Errorf("the provider holds %d sandboxes; want 1 (the expired one destroyed)", alive)
	}
	e.create() // its place is free
}
