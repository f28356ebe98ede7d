package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestShares makes shares of one attempt per webhook, on a clock of their own.
func newTestShares() (*hookShares, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newHookShares(hookShareDivisor, clock.now), clock
}

// acquireOK takes a place in webhook 7's share and fails the test unless it gets one.
func acquireOK(t *testing.T, s *hookShares) func() {
	t.Helper()
	release, ok, err := s.acquire(context.Background(), 7)
	if err != nil || !ok {
		t.Fatalf("acquire = ok %v, err %v; want a place", ok, err)
	}
	return release
}

// acquireLater starts an acquire that is expected to wait, and returns where its result goes.
func acquireLater(s *hookShares) chan error {
	got := make(chan error, 1)
	go func() {
		release, ok, err := s.acquire(context.Background(), 7)
		switch {
		case err != nil:
			got <- err
		case !ok:
			got <- errors.New("postponed")
		default:
			release()
			got <- nil
		}
	}()
	return got
}

func TestHookSharesPostponeSlowWebhook(t *testing.T) {
	t.Parallel()
	s, clock := newTestShares()

	// Full, its attempt quick so far: the next delivery waits for the place.
	first := acquireOK(t, s)
	waiting := acquireLater(s)
	first()
	if err := <-waiting; err != nil {
		t.Fatalf("delivery behind a quick attempt: %v, want a place once it ended", err)
	}

	// Full, its attempt older than slowAttempt: postponed at once.
	first = acquireOK(t, s)
	clock.advance(2 * slowAttempt)
	if _, ok, err := s.acquire(context.Background(), 7); ok || err != nil {
		t.Fatalf("delivery behind a slow attempt: ok %v, err %v; want postponed", ok, err)
	}
	first() // ran 2×slowAttempt: the webhook stays slow

	// Slow, full again with a young attempt: postponed at once, without waiting.
	second := acquireOK(t, s)
	if _, ok, err := s.acquire(context.Background(), 7); ok || err != nil {
		t.Fatalf("slow webhook, share full: ok %v, err %v; want postponed at once", ok, err)
	}
	second() // ended quickly: no longer slow

	third := acquireOK(t, s)
	waiting = acquireLater(s)
	third()
	if err := <-waiting; err != nil {
		t.Fatalf("after a quick attempt: %v, want a place", err)
	}
	if n := len(s.m); n != 0 {
		t.Errorf("%d shares left with nothing in flight, want 0", n)
	}
}

func TestHookSharesSlowMemoryEnds(t *testing.T) {
	t.Parallel()
	s, clock := newTestShares()
	first := acquireOK(t, s)
	clock.advance(2 * slowAttempt)
	first() // slow
	clock.advance(slowMemory)

	young := acquireOK(t, s)
	waiting := acquireLater(s)
	young()
	if err := <-waiting; err != nil {
		t.Fatalf("slow a while ago, quick now: %v, want a place after waiting", err)
	}
}

func TestHookSharesWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	s, _ := newTestShares()
	release := acquireOK(t, s)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok, err := s.acquire(ctx, 7); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with a cancelled context = ok %v, err %v; want context.Canceled", ok, err)
	}
}

func TestHookSharesSeparateWebhooks(t *testing.T) {
	t.Parallel()
	s, clock := newTestShares()
	slow := acquireOK(t, s)
	defer slow()
	clock.advance(2 * slowAttempt)
	for id := uint64(8); id < 11; id++ {
		release, ok, err := s.acquire(context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("webhook %d beside a slow one: ok %v, err %v; want a place", id, ok, err)
		}
		release()
	}
}
