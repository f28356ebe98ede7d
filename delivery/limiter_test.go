package delivery

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

// newTestLimiter makes shares of one attempt per webhook, on a clock of their own.
func newTestLimiter() (*limiter, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newLimiter(hookShareDivisor, 0, clock.now), clock
}

// acquireOK takes a place in webhook 7's share and fails the test unless it gets one.
func acquireOK(t *testing.T, s *limiter) func() {
	t.Helper()
	release, ok, err := startAttempt(s, context.Background(), 7)
	if err != nil || !ok {
		t.Fatalf("acquire = ok %v, err %v; want a place", ok, err)
	}
	return release
}

// acquireLater starts an acquire that is expected to wait, and returns where its result goes.
func acquireLater(s *limiter) chan error {
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
	s, clock := newTestLimiter()

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
	s, clock := newTestLimiter()
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
	s, _ := newTestLimiter()
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
	s, clock := newTestLimiter()
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

// markSlow makes each of ids slow: an attempt that runs 2×slowAttempt. The clock moves.
func markSlow(t *testing.T, s *limiter, clock *fakeClock, ids ...uint64) {
	t.Helper()
	var releases []func()
	for _, id := range ids {
		release, ok, err := startAttempt(s, context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("webhook %d, attempt to make it slow: ok %v, err %v; want a place", id, ok, err)
		}
		releases = append(releases, release)
	}
	clock.advance(2 * slowAttempt)
	for _, release := range releases {
		release()
	}
}

// take takes a place for webhook id and fails the test unless it gets one (want true) or is
// postponed (want false).
func take(t *testing.T, s *limiter, id uint64, want bool) func() {
	t.Helper()
	release, ok, err := startAttempt(s, context.Background(), id)
	if err != nil || ok != want {
		t.Fatalf("webhook %d: ok %v, err %v; want ok %v", id, ok, err, want)
	}
	return release
}

func TestHookSharesSlowWebhooksTogetherBounded(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newLimiter(4, 0, clock.now) // a share of 1 each, 2 for the slow webhooks together
	markSlow(t, s, clock, 1, 2, 3)

	first := take(t, s, 1, true)
	second := take(t, s, 2, true)
	// Webhook 3 has its share free, but the slow webhooks have their bound.
	take(t, s, 3, false)
	// A webhook that is not slow is not held back by them.
	take(t, s, 9, true)()
	// While it waits for room, webhook 3 stays slow: each refusal renews its mark, which
	// would otherwise lapse and let it in uncounted.
	for range 2 {
		clock.advance(slowMemory * 3 / 4)
		take(t, s, 3, false)
	}

	// One slow attempt ends: webhook 3 gets the place it frees.
	first()
	take(t, s, 3, true)()
	second()
	if s.slowInFlight != 0 {
		t.Errorf("slow places after every release = %d, want 0", s.slowInFlight)
	}
	if n := len(s.m); n != 0 {
		t.Errorf("%d shares left with nothing in flight, want 0", n)
	}
}

func TestHookSharesSlowWebhookGetsItsPart(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newLimiter(16, 0, clock.now) // a share of 4 each, 8 for the slow webhooks together
	markSlow(t, s, clock, 1, 2, 3)    // three slow webhooks: a part of 8/3 = 2 each

	held := []func(){take(t, s, 1, true), take(t, s, 1, true)}
	// Webhook 1 has its part, though its share and the bound have room.
	take(t, s, 1, false)
	// Its share gave back the place it refused: two held, the rest free.
	if h := s.m[1]; h == nil || !h.sem.TryAcquire(s.max-2) {
		t.Fatalf("webhook 1's share after a refusal: want %d places free", s.max-2)
	} else {
		h.sem.Release(s.max - 2)
	}
	// The busy webhook does not keep the others out.
	for _, id := range []uint64{2, 2, 3, 3} {
		held = append(held, take(t, s, id, true))
	}
	for _, release := range held {
		release()
	}
	if s.slowInFlight != 0 || len(s.m) != 0 {
		t.Errorf("after every release: %d slow places, %d shares; want 0 and 0", s.slowInFlight, len(s.m))
	}
}

// TestHookSharesPlaceNeverBegun gives back places whose attempts never started, as when the
// wait for a slot ends with the context: the webhook is not marked slow, however long the
// place was held, and a slow place's count goes back.
func TestHookSharesPlaceNeverBegun(t *testing.T) {
	t.Parallel()
	s, clock := newTestLimiter()
	p := reserve(t, s, 7)
	clock.advance(2 * slowAttempt)
	p.release()
	if s.isSlow(7, clock.now()) {
		t.Fatal("webhook 7 slow after a place that never began; want not slow")
	}

	markSlow(t, s, clock, 8)
	p = reserve(t, s, 8)
	if !p.counted {
		t.Fatal("slow webhook 8's place is not counted; want counted")
	}
	p.release()
	if s.slowInFlight != 0 || len(s.m) != 0 {
		t.Errorf("after the releases: %d slow places, %d shares; want 0 and 0", s.slowInFlight, len(s.m))
	}
	if !s.isSlow(8, clock.now()) {
		t.Error("webhook 8 no longer slow after a place that never began; want still slow")
	}
}

// reserve takes a place in webhook id's share without beginning its attempt, as a delivery
// does before it waits for a slot, and fails the test unless it gets one.
func reserve(t *testing.T, s *limiter, id uint64) *permit {
	t.Helper()
	p, ok, err := s.acquire(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("webhook %d: acquire = ok %v, err %v; want a place", id, ok, err)
	}
	return p
}

// startAttempt takes a place in webhook id's share and begins its attempt at once, as a
// delivery does that finds a slot free. It returns the place's release.
func startAttempt(s *limiter, ctx context.Context, id uint64) (func(), bool, error) {
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
	s, clock := newTestLimiter()
	p := reserve(t, s, 7)
	clock.advance(2 * slowAttempt)
	if wait, slow := s.waitLimit(7, s.m[7]); slow || wait <= 0 {
		t.Fatalf("share full of a place waiting for a slot: slow %v, wait %v; want a wait, not slow", slow, wait)
	}
	p.begin()
	clock.advance(2 * slowAttempt)
	if _, slow := s.waitLimit(7, s.m[7]); !slow {
		t.Fatalf("share full of an attempt running 2×slowAttempt: not slow, want slow")
	}
	p.release()
}
