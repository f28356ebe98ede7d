package consumer

import (
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// hookShareDivisor bounds one webhook's attempts in flight to Concurrency/hookShareDivisor (at
// least one), so that a slow endpoint never takes every slot.
const hookShareDivisor = 4

// slowShareDivisor bounds the attempts in flight of all webhooks known to be slow, together,
// to Concurrency/slowShareDivisor (at least one): several slow endpoints must not fill every
// slot between them, as hookShareDivisor of them at their shares would.
const slowShareDivisor = 2

// slowAttempt is how long an attempt must run for its webhook to count as slow. It is also
// how long deliveries may be held up, with their messages, while a webhook that has just
// filled its share turns out to be slow. A webhook whose share is full of attempts this old
// gets under Concurrency/hookShareDivisor/slowAttempt deliveries a second (64 with the
// default concurrency): more of its deliveries would only hold messages that other webhooks'
// deliveries wait behind.
const slowAttempt = 250 * time.Millisecond

// slowMemory is how long a webhook counts as slow after its last slow attempt, unless an
// attempt ends quickly first.
const slowMemory = time.Minute

// hookShares bounds each webhook's attempts in flight. A delivery over its webhook's share
// waits for a place while the share's attempts are quick. Once the oldest has run for
// slowAttempt, waiting would hold the delivery's message, and with it the message's other
// deliveries and a prefetch place, for as long as the endpoint takes: the delivery is
// postponed instead. A webhook found slow stays so (see slowMemory): while its share is
// full, its deliveries are postponed at once rather than after another wait of up to
// slowAttempt each time its attempts turn over. The attempts of slow webhooks together are
// bounded too (see slowShareDivisor): past that bound a slow webhook's deliveries are
// postponed even while its own share has room.
type hookShares struct {
	max     int64
	slowMax int
	now     func() time.Time
	mu      sync.Mutex
	m       map[uint64]*hookShare
	slow    map[uint64]time.Time // when each slow webhook was last seen slow
	// slowInFlight counts the attempts in flight that started while their webhook was slow.
	slowInFlight int
}

type hookShare struct {
	sem    *semaphore.Weighted
	users  int         // holders and waiters; the entry goes when none is left
	starts []time.Time // when each attempt in flight started
}

func newHookShares(concurrency int, now func() time.Time) *hookShares {
	return &hookShares{
		max:     int64(max(1, concurrency/hookShareDivisor)),
		slowMax: max(1, concurrency/slowShareDivisor),
		now:     now,
		m:       map[uint64]*hookShare{},
		slow:    map[uint64]time.Time{},
	}
}

// acquire takes a place in webhook id's share and returns its release. ok is false, and
// nothing is taken, when the share is full and the webhook is slow; otherwise acquire waits
// for a place until ctx ends.
func (s *hookShares) acquire(ctx context.Context, id uint64) (release func(), ok bool, err error) {
	s.mu.Lock()
	h := s.m[id]
	if h == nil {
		h = &hookShare{sem: semaphore.NewWeighted(s.max)}
		s.m[id] = h
	}
	h.users++
	s.mu.Unlock()
	for !h.sem.TryAcquire(1) {
		wait, slow := s.patience(id, h)
		if slow {
			s.leave(id, h)
			return nil, false, nil
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := h.sem.Acquire(wctx, 1)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			s.leave(id, h)
			return nil, false, ctx.Err()
		}
		// The oldest attempt has now run for slowAttempt, or ended: look again.
	}
	s.mu.Lock()
	start := s.now()
	counted := s.isSlow(id, start)
	if counted && s.slowInFlight >= s.slowMax {
		s.mu.Unlock()
		h.sem.Release(1)
		s.leave(id, h)
		return nil, false, nil
	}
	if counted {
		s.slowInFlight++
	}
	h.starts = append(h.starts, start)
	s.mu.Unlock()
	return func() { s.release(id, h, start, counted) }, true, nil
}

// isSlow reports whether webhook id was seen slow within slowMemory of t. s.mu is held.
func (s *hookShares) isSlow(id uint64, t time.Time) bool {
	seen, ok := s.slow[id]
	return ok && t.Sub(seen) < slowMemory
}

// patience says, for a webhook whose share is full, whether it is slow and, if not, how long
// a delivery may wait for a place before looking again.
func (s *hookShares) patience(id uint64, h *hookShare) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.now()
	if s.isSlow(id, t) {
		return 0, true
	}
	delete(s.slow, id)
	var age time.Duration
	for _, st := range h.starts {
		age = max(age, t.Sub(st))
	}
	if age >= slowAttempt {
		s.slow[id] = t
		return 0, true
	}
	return slowAttempt - age, false
}

func (s *hookShares) release(id uint64, h *hookShare, start time.Time, counted bool) {
	s.mu.Lock()
	if counted {
		s.slowInFlight--
	}
	if i := slices.IndexFunc(h.starts, start.Equal); i >= 0 {
		h.starts = slices.Delete(h.starts, i, i+1)
	}
	if t := s.now(); t.Sub(start) >= slowAttempt {
		s.slow[id] = t
	} else {
		delete(s.slow, id)
	}
	s.mu.Unlock()
	h.sem.Release(1)
	s.leave(id, h)
}

func (s *hookShares) leave(id uint64, h *hookShare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.users--; h.users == 0 {
		delete(s.m, id)
	}
}
