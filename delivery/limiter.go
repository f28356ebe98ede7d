package delivery

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

// slowShareDivisor bounds the places taken while their webhook was known slow, all webhooks
// together, to Concurrency/slowShareDivisor (at least one), and each slow webhook to an even
// part of that bound (at least one place): several slow endpoints must not fill every slot
// between them, as hookShareDivisor of them at their shares would, and a busy slow webhook
// must not keep a quiet one out of the bound.
const slowShareDivisor = 2

// slowAttempt is how long an attempt must run for its webhook to count as slow. It is also
// how long deliveries may be held up at a time, with their messages, while a webhook that has
// just filled its share turns out to be slow (a share full of places still waiting for a slot
// keeps them waiting, a round of slowAttempt at a time). A webhook whose share is full of
// attempts this old gets under Concurrency/hookShareDivisor/slowAttempt deliveries a second
// (64 with the default concurrency): more of its deliveries would only hold messages that
// other webhooks' deliveries wait behind.
const slowAttempt = 250 * time.Millisecond

// slowMemory is how long, at least, a webhook counts as slow after it was last seen slow (an
// attempt that ran slowAttempt, or a delivery postponed), unless an attempt ends quickly
// first. A mark lasts twice the wait of a postponed delivery where that is longer (see
// newLimiter), so that it does not lapse while the webhook's deliveries are away and let
// them all back in uncounted.
const slowMemory = time.Minute

// limiter bounds each webhook's attempts in flight. A delivery over its webhook's share
// waits for a place while the share's attempts are quick. Once the oldest has run for
// slowAttempt, waiting would hold the delivery's message, and with it the message's other
// deliveries and a prefetch place, for as long as the endpoint takes: the delivery is
// postponed instead. A webhook found slow stays so (see slowMemory): while its share is
// full, its deliveries are postponed at once rather than after another wait of up to
// slowAttempt each time its attempts turn over. The places of slow webhooks are bounded
// too, together and each (see slowShareDivisor): past either bound a slow webhook's
// deliveries are postponed even while its own share has room, and it stays slow until one
// of its attempts ends quickly.
type limiter struct {
	max     int64
	slowMax int
	now     func() time.Time
	mu      sync.Mutex
	m       map[uint64]*webhookShare
	slow    map[uint64]time.Time // when each slow webhook was last seen slow
	memory  time.Duration        // how long a mark in slow lasts (see slowMemory)
	sweptAt time.Time            // when expired entries of slow were last dropped
	// slowInFlight counts the places taken while their webhook was slow, attempts in flight
	// and those waiting for a slot.
	slowInFlight int
}

type webhookShare struct {
	sem     *semaphore.Weighted
	users   int         // holders and waiters; the entry goes when none is left
	starts  []time.Time // when each attempt in flight started
	counted int         // places held that count in slowInFlight
}

// newLimiter bounds the shares of a pool of concurrency slots; postponed deliveries wait
// postponeDelay before they come back.
func newLimiter(concurrency int, postponeDelay time.Duration, now func() time.Time) *limiter {
	return &limiter{
		memory:  max(slowMemory, 2*postponeDelay),
		max:     int64(max(1, concurrency/hookShareDivisor)),
		slowMax: max(1, concurrency/slowShareDivisor),
		now:     now,
		m:       map[uint64]*webhookShare{},
		slow:    map[uint64]time.Time{},
	}
}

// place is a delivery's place in its webhook's share, taken by acquire.
type permit struct {
	s  *limiter
	id uint64
	h  *webhookShare
	// counted marks a place taken while the webhook was slow: it counts toward slowMax.
	counted bool
	// start is when the attempt began (see begin); zero while it waits for a slot.
	start time.Time
}

// acquire takes a place in webhook id's share. ok is false, and nothing is taken, when the
// webhook is slow and its share, or the slow webhooks' together, is full; otherwise acquire
// waits for a place until ctx ends. The caller calls begin once its attempt starts and
// release when it ends.
func (s *limiter) acquire(ctx context.Context, id uint64) (p *permit, ok bool, err error) {
	s.mu.Lock()
	h := s.m[id]
	if h == nil {
		h = &webhookShare{sem: semaphore.NewWeighted(s.max)}
		s.m[id] = h
	}
	h.users++
	s.mu.Unlock()
	for !h.sem.TryAcquire(1) {
		wait, slow := s.waitLimit(id, h)
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
	t := s.now()
	counted := s.isSlow(id, t)
	if counted && (s.slowInFlight >= s.slowMax || h.counted >= s.slowPart(t)) {
		// Marked slow again while it waits for room, so that the mark cannot lapse and
		// let the webhook back in uncounted.
		s.slow[id] = t
		s.mu.Unlock()
		h.sem.Release(1)
		s.leave(id, h)
		return nil, false, nil
	}
	if counted {
		s.slowInFlight++
		h.counted++
	}
	s.mu.Unlock()
	return &permit{s: s, id: id, h: h, counted: counted}, true, nil
}

// begin marks the place's attempt as started. Only started attempts make their webhook
// look slow: a place waiting for one of the worker's slots, which other webhooks may hold,
// says nothing of this webhook's endpoint.
func (p *permit) begin() {
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p.start = s.now()
	p.h.starts = append(p.h.starts, p.start)
}

// release gives the place back. An attempt that ran for slowAttempt or longer marks its
// webhook slow; a quicker one clears the mark.
func (p *permit) release() {
	s, h := p.s, p.h
	s.mu.Lock()
	if p.counted {
		s.slowInFlight--
		h.counted--
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

// isSlow reports whether webhook id was seen slow within s.memory of t, and forgets an
// older mark. s.mu is held.
func (s *limiter) isSlow(id uint64, t time.Time) bool {
	seen, ok := s.slow[id]
	if ok && t.Sub(seen) >= s.memory {
		delete(s.slow, id)
		return false
	}
	return ok
}

// slowPart is each slow webhook's part of slowMax: an even split among the webhooks marked
// slow, at least one place. With no more slow webhooks than slowMax, the others' parts
// always leave room for one that has none. s.mu is held.
func (s *limiter) slowPart(t time.Time) int {
	if t.Sub(s.sweptAt) >= slowAttempt {
		for id, seen := range s.slow {
			if t.Sub(seen) >= s.memory {
				delete(s.slow, id)
			}
		}
		s.sweptAt = t
	}
	return max(1, s.slowMax/max(1, len(s.slow)))
}

// waitLimit says, for a webhook whose share is full, whether it is slow and, if not, how long
// a delivery may wait for a place before looking again.
func (s *limiter) waitLimit(id uint64, h *webhookShare) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.now()
	if s.isSlow(id, t) {
		s.slow[id] = t // postponed: still slow, see slowMemory
		return 0, true
	}
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

func (s *limiter) leave(id uint64, h *webhookShare) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.users--; h.users == 0 {
		delete(s.m, id)
	}
}
