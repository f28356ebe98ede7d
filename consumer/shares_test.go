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
	release, ok, err := startAttempt(s, context.Background(), 7)
	if err != nil || !ok {
		t.Fatalf("acquire = ok %v, err %v; want a place", ok, err)
	}
	return release
}

// acquireLater starts an acquire that is expected to wait, and returns where its result goes.
func acquireLater(s *hookShares) chan error {
	got := make(chan error, 1)
	go func() {
		release, ok, err := startAttempt(s, context.Background(), 7)
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
	if _, ok, err := startAttempt(s, context.Background(), 7); ok || err != nil {
		t.Fatalf("delivery behind a slow attempt: ok %v, err %v; want postponed", ok, err)
	}
	first() // ran 2×slowAttempt: the webhook stays slow

	// Slow, full again with a young attempt: postponed at once, without waiting.
	second := acquireOK(t, s)
	if _, ok, err := startAttempt(s, context.Background(), 7); ok || err != nil {
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
	if _, ok, err := startAttempt(s, ctx, 7); ok || !errors.Is(err, context.Canceled) {
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
		release, ok, err := startAttempt(s, context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("webhook %d beside a slow one: ok %v, err %v; want a place", id, ok, err)
		}
		release()
	}
}

func TestHookSharesSlowWebhooksTogetherBounded(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const concurrency = 8 // a share of 2 each, 4 for the slow webhooks together
	s := newHookShares(concurrency, clock.now)
	ctx := context.Background()
	// Webhooks 1 to 4 each make an attempt that runs 2×slowAttempt: all four are slow.
	var first []func()
	for id := uint64(1); id <= 4; id++ {
		release, ok, err := startAttempt(s, ctx, id)
		if err != nil || !ok {
			t.Fatalf("webhook %d, first attempt: ok %v, err %v; want a place", id, ok, err)
		}
		first = append(first, release)
	}
	clock.advance(2 * slowAttempt)
	for _, release := range first {
		release()
	}

	// Webhooks 1 and 2 fill their shares: the slow webhooks' bound of 4 is reached.
	var held []func()
	for _, id := range []uint64{1, 1, 2, 2} {
		release, ok, err := startAttempt(s, ctx, id)
		if err != nil || !ok {
			t.Fatalf("slow webhook %d within the bound: ok %v, err %v; want a place", id, ok, err)
		}
		held = append(held, release)
	}
	// Webhook 3 has its whole share free, but the slow webhooks have their bound.
	if _, ok, err := startAttempt(s, ctx, 3); ok || err != nil {
		t.Fatalf("slow webhook 3 past the slow bound: ok %v, err %v; want postponed", ok, err)
	}
	// A webhook that is not slow is not held back by them.
	release, ok, err := startAttempt(s, ctx, 9)
	if err != nil || !ok {
		t.Fatalf("quick webhook beside 4 slow attempts: ok %v, err %v; want a place", ok, err)
	}
	release()

	// One slow attempt ends: webhook 3 gets the place it frees.
	held[0]()
	release, ok, err = startAttempt(s, ctx, 3)
	if err != nil || !ok {
		t.Fatalf("slow webhook 3 after a slow attempt ended: ok %v, err %v; want a place", ok, err)
	}
	release()
	for _, release := range held[1:] {
		release()
	}
	if s.slowInFlight != 0 {
		t.Errorf("slow attempts in flight after every release = %d, want 0", s.slowInFlight)
	}
	if n := len(s.m); n != 0 {
		t.Errorf("%d shares left with nothing in flight, want 0", n)
	}
}

// startAttempt takes a place in webhook id's share and begins its attempt at once, as a
// delivery does that finds a slot free. It returns the place's release.
func startAttempt(s *hookShares, ctx context.Context, id uint64) (func(), bool, error) {
	p, ok, err := s.acquire(ctx, id)
	if !ok || err != nil {
		return nil, ok, err
	}
	p.begin()
	return p.release, true, nil
}

// TestHookSharesWaitingForASlotIsNotSlow fills webhook 7's share with a place whose attempt
// waits for a slot, as when other webhooks hold every slot. However long it waits, the webhook
// is not slow: a delivery behind it waits for a place instead of being postponed.
func TestHookSharesWaitingForASlotIsNotSlow(t *testing.T) {
	t.Parallel()
	s, clock := newTestShares()
	p, ok, err := s.acquire(context.Background(), 7)
	if err != nil || !ok {
		t.Fatalf("acquire = ok %v, err %v; want a place", ok, err)
	}
	clock.advance(2 * slowAttempt)
	if wait, slow := s.patience(7, s.m[7]); slow || wait <= 0 {
		t.Fatalf("share full of a place waiting for a slot: slow %v, wait %v; want a wait, not slow", slow, wait)
	}
	p.begin()
	clock.advance(2 * slowAttempt)
	if _, slow := s.patience(7, s.m[7]); !slow {
		t.Fatalf("share full of an attempt running 2×slowAttempt: not slow, want slow")
	}
	p.release()
}
