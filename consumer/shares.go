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
	// slowInFlight counts the places taken while their webhook was slow, attempts in flight
	// and those waiting for a slot.
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

// place is a delivery's place in its webhook's share, taken by acquire.
type place struct {
	s  *hookShares
	id uint64
	h  *hookShare
	// counted marks a place taken while the webhook was slow: it counts toward slowMax.
	counted bool
	// start is when the attempt began (see begin); zero while it waits for a slot.
	start time.Time
}

// acquire takes a place in webhook id's share. ok is false, and nothing is taken, when the
// webhook is slow and its share, or the slow webhooks' together, is full; otherwise acquire
// waits for a place until ctx ends. The caller calls begin once its attempt starts and
// release when it ends.
func (s *hookShares) acquire(ctx context.Context, id uint64) (p *place, ok bool, err error) {
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
	counted := s.isSlow(id, s.now())
	if counted && s.slowInFlight >= s.slowMax {
		s.mu.Unlock()
		h.sem.Release(1)
		s.leave(id, h)
		return nil, false, nil
	}
	if counted {
		s.slowInFlight++
	}
	s.mu.Unlock()
	return &place{s: s, id: id, h: h, counted: counted}, true, nil
}

// begin marks the place's attempt as started. Only started attempts make their webhook
// look slow: a place waiting for one of the worker's slots, which other webhooks may hold,
// says nothing of this webhook's endpoint.
func (p *place) begin() {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p.start = s.now()
	p.h.starts = append(p.h.starts, p.start)
}

// release gives the place back. An attempt that ran for slowAttempt or longer marks its
// webhook slow; a quicker one clears the mark.
func (p *place) release() {
	s, h := p.s, p.h
	s.mu.Lock()
	if p.counted {
		s.slowInFlight--
	}
	if !p.start.IsZero() {
		if i := slices.IndexFunc(h.starts, p.start.Equal); i >= 0 {
			h.starts = slices.Delete(h.starts, i, i+1)
		}
		if t := s.now(); t.Sub(p.start) >= slowAttempt {
			s.slow[p.id] = t
		} else {
			delete(s.slow, p.id)
		}
	}
	s.mu.Unlock()
	h.sem.Release(1)
	s.leave(p.id, h)
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

func (s *hookShares) leave(id uint64, h *hookShare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.users--; h.users == 0 {
		delete(s.m, id)
	}
}
