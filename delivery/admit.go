package delivery

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
)

// The admission policy (contract §8). Before an attempt takes a worker slot, one place says
// whether it may go now, must wait, or has waited too long, from its webhook's Retry-After
// pause, circuit breaker and rate limit, in that order; the slow-webhook fair share
// (limiter.go) comes last, at the slot. A delivery that must wait is held (hold.go): parked
// in a hold queue without using an attempt, its row due when it comes back, when it is
// admitted again. The rules are pure functions of what is known and the clock (gate, paced,
// slotted); admit does the I/O they need.

// Rate-limit constants.
const (
	// rateTolerance is how late a request may go after its slot without putting more than
	// the limit + 10 % in any one-second window: slots are spaced for it (rateInterval).
	rateTolerance = 200 * time.Millisecond
	// rateLate is how late for its slot an attempt may still start, counting the round trip
	// of its reservation, which blurs where the database's slot is on the worker's clock;
	// later, it reserves again. The rest of rateTolerance is left for rendering, sending and
	// the network.
	rateLate = 40 * time.Millisecond
	// rateMemWait is the longest wait for a slot spent in memory, holding the delivery's
	// message but no worker slot; a longer one is held in a hold queue. It is the shortest
	// hold and holdSlack: a hold must not bring a delivery back after its slot.
	rateMemWait = time.Second + holdSlack
	// holdSlack is how long before its slot a held delivery aims to be back: the middle of
	// the time it may wait in memory, so that it makes its slot back early or late by up to
	// that much. A hold takes longer than its queue's delay by the publish, the broker's
	// dead-lettering and the handler; on the loaded 2-core machine, under a fan-out to 1,000
	// webhooks limited to 5/s, more than the 250 ms first given, and slots were missed.
	holdSlack = 625 * time.Millisecond
	// rateHorizon is how far ahead a slot may be reserved. Further, the delivery is held
	// without a slot and reserves when it is back: a raised limit, or a delivery that never
	// comes back, costs at most this much of the old pace.
	rateHorizon = 10 * time.Minute
	// maxLate is how many rate-limit slots one delivery may miss in a row, all worker slots
	// busy, before it is held for a second instead.
	maxLate = 3
)

type admitVerdict int

const (
	admitGo      admitVerdict = iota // attempt it (after wait)
	admitHold                        // hold it until until
	admitFail                        // fail it with reason fail: held past the breaker's hold
	admitDisable                     // the breaker stayed open for the whole hold: disable the webhook, fail it
)

// holdReason says why a delivery waits; it labels webhookd_deliveries_held_total.
type holdReason string

const (
	heldRateLimit holdReason = "rate_limit"
	heldPaused    holdReason = "paused"
	heldCircuit   holdReason = "circuit_open"
	heldOutage    holdReason = "outage"
)

// reasonCircuitOpen is why a delivery held behind an open breaker for the whole hold fails.
const reasonCircuitOpen = "circuit open"

// admission is the policy's answer for one delivery.
type admission struct {
	verdict admitVerdict
	// until is when a held delivery looks again.
	until  time.Time
	reason holdReason
	// fail is the reason of admitFail and admitDisable.
	fail string
	// claim means: go through the open breaker if its probe can be claimed for this attempt.
	claim bool
	// wait is how long to wait in memory before going (the rate-limit slot).
	wait time.Duration
	// slot is the rate-limit slot reserved for the attempt; zero for none.
	slot rateSlot
}

// rateSlot is a reserved rate-limit slot on the worker's clock: the attempt may start at at,
// not sooner (the slot cannot be earlier), and must have started by by (else it may be too
// late for it). The reservation's round trip lies between the two.
type rateSlot struct {
	at, by time.Time
}

func (r rateSlot) none() bool { return r.at.IsZero() }

// policy is the settings the rules read.
type policy struct {
	// probe is how often an open breaker lets a probe through; hold how long a delivery
	// waits behind it.
	probe, hold time.Duration
}

// gateInput is what is known of a delivery's webhook and of the delivery itself.
type gateInput struct {
	open    bool // its breaker is open
	breaker breakerState
	// pausedUntil is when its Retry-After pause ends; zero for none.
	pausedUntil time.Time
	// circuitSince is when the delivery was first held for the open breaker; zero if never.
	circuitSince time.Time
	// probe means a probe was claimed for the delivery.
	probe bool
}

// gate applies the breaker and pause rules, first match wins:
//   - an open breaker whose hold has passed since it opened disables the webhook;
//   - a delivery held behind it for the whole hold fails with reason "circuit open";
//   - a paused webhook's deliveries wait until the pause ends;
//   - through an open breaker go only its probe: the delivery a probe was claimed for, or
//     one that finds the probe due and claims it;
//   - the others wait (circuitHold).
func (p policy) gate(in gateInput, now time.Time) admission {
	switch {
	case in.open && !now.Before(in.breaker.openedAt.Add(p.hold)):
		return admission{verdict: admitDisable, fail: reasonCircuitOpen}
	case in.open && !in.circuitSince.IsZero() && !now.Before(in.circuitSince.Add(p.hold)):
		return admission{verdict: admitFail, fail: reasonCircuitOpen}
	case in.pausedUntil.After(now):
		return admission{verdict: admitHold, until: in.pausedUntil, reason: heldPaused}
	case !in.open || in.probe:
		return admission{verdict: admitGo}
	case !in.breaker.probeAt.After(now):
		return admission{verdict: admitGo, claim: true}
	}
	return p.circuitHold(in.circuitSince, now)
}

// circuitHold holds a delivery behind an open breaker first held at since (zero: now) for as
// long again as it has waited so far, at least one probe interval and at most the longest
// hold queue, and never past the end of its hold. Closing the breaker releases it sooner
// (guards.go): the waits only bound what a held delivery costs while the endpoint is down.
func (p policy) circuitHold(since, now time.Time) admission {
	if since.IsZero() {
		since = now
	}
	wait := min(max(now.Sub(since), p.probe), broker.HoldDelays[len(broker.HoldDelays)-1])
	until := now.Add(wait)
	if end := since.Add(p.hold); end.Before(until) {
		until = end
	}
	return admission{verdict: admitHold, until: until, reason: heldCircuit}
}

// rateInterval is the spacing of the slots of a webhook limited to limit attempts a second.
// The limit + 10 % (rounded down) of consecutive slots span 1 s + rateTolerance, so that no
// one-second window holds more than the limit + 10 % of requests made up to rateTolerance
// late, and the long-run rate stays within the limit: 10.91 ms for 100/s (91.7/s), 240 ms
// for 5/s (4.17/s: below 10 a second, 10 % of the limit is less than one request).
// It is rounded up to the microsecond, the database's precision, so that rounding never
// brings slots closer.
func rateInterval(limit int64) time.Duration {
	span, allowed := (time.Second + rateTolerance).Microseconds(), limit+limit/10
	return time.Duration((span+allowed-1)/allowed) * time.Microsecond
}

// paced says what a reservation's answer means: the free slot is wait after the database's
// now, which was between sent and answered on the worker's clock, and taken says whether it
// was reserved (it is beyond rateHorizon otherwise). again means the answer took too long to
// place the slot within rateLate: reserve again.
func paced(wait time.Duration, taken bool, sent, answered time.Time) (a admission, again bool) {
	slot := rateSlot{at: answered.Add(wait), by: sent.Add(wait + rateLate)}
	switch {
	case !taken:
		// Back when the free slot is within the horizon, to reserve then.
		return admission{verdict: admitHold, until: answered.Add(max(wait-rateHorizon, broker.HoldDelays[0])), reason: heldRateLimit}, false
	case slot.by.Before(slot.at):
		return admission{}, true
	case wait <= rateMemWait:
		return admission{verdict: admitGo, wait: wait, slot: slot}, false
	}
	return admission{verdict: admitHold, until: slot.at.Add(-holdSlack), reason: heldRateLimit, slot: slot}, false
}

// slotted says what becomes of a delivery that comes back with a slot reserved: it goes at
// its slot, or waits for it; again means its slot is lost (it is past slot.by) and it must
// reserve another.
func slotted(slot rateSlot, now time.Time) (a admission, again bool) {
	switch {
	case now.After(slot.by):
		return admission{}, true
	case slot.at.Sub(now) > rateMemWait:
		return admission{verdict: admitHold, until: slot.at.Add(-holdSlack), reason: heldRateLimit, slot: slot}, false
	}
	return admission{verdict: admitGo, wait: max(slot.at.Sub(now), 0), slot: slot}, false
}

// RateLimits reserves rate-limit slots.
type RateLimits interface {
	// Reserve takes webhook id's next slot, slots interval apart, unless it is further than
	// horizon, and not sooner than phase; it answers how long from the database's now the
	// free slot is, whether it was taken, and the statement's round trip.
	Reserve(ctx context.Context, id uint64, interval, phase, horizon time.Duration) (repository.Reservation, error)
}

// admit runs the policy for j, claiming the probe or reserving the slot that it asks for. It
// notes in j the probe claimed and the slot reserved.
func (hd *Handler) admit(ctx context.Context, j *job) (admission, error) {
	st := hd.guards.load()
	b, open := st.breakers[j.webhook.ID]
	paused, isPaused := st.pauses[j.webhook.ID]
	limit := j.webhook.RateLimit
	limited := limit.Valid && limit.Int64 > 0
	if !open && !isPaused && !limited {
		// What nearly every delivery pays: not even a look at the clock.
		return admission{verdict: admitGo}, nil
	}
	now := hd.now()
	a := hd.policy.gate(gateInput{open: open, breaker: b, pausedUntil: paused, circuitSince: j.circuitSince, probe: j.probe}, now)
	if a.verdict == admitGo && a.claim {
		claimed, err := hd.store.ClaimProbe(ctx, j.webhook.ID, hd.cfg.BreakerProbe)
		if err != nil {
			return admission{}, err
		}
		if !claimed {
			return hd.policy.circuitHold(j.circuitSince, now), nil
		}
		j.probe = true
		hd.log.Info("probe through an open breaker", "webhook_id", j.webhook.ID, "delivery_id", j.deliveryID)
	}
	if a.verdict != admitGo || !limited {
		return a, nil
	}
	if !j.slot.none() {
		a, again := slotted(j.slot, now)
		if !again {
			return a, nil
		}
		metricSlotsMissed.WithLabelValues("back_late").Inc()
	}
	interval := rateInterval(limit.Int64)
	for range maxLate {
		// An idle webhook's first slot is up to an interval away, at random: see Reserve.
		phase := time.Duration(rand.Int64N(int64(interval)))
		r, err := hd.store.Reserve(ctx, j.webhook.ID, interval, phase, rateHorizon)
		if err != nil {
			return admission{}, err
		}
		answered := hd.now()
		a, again := paced(r.Wait, r.Taken, answered.Add(-r.RoundTrip), answered)
		if !again {
			j.slot = a.slot
			return a, nil
		}
		metricSlotsMissed.WithLabelValues("answer_slow").Inc()
	}
	// The database answers too slowly to place a slot: look again in a second.
	j.slot = rateSlot{}
	return admission{verdict: admitHold, until: now.Add(broker.HoldDelays[0]), reason: heldRateLimit}, nil
}

// take admits j and takes its places: a share of its webhook's (limiter.go) and a worker
// slot, once its rate-limit slot, if any, has come. done means there is nothing more to do
// with j (held, failed or postponed) or err says why not; deferred, that it was held or
// postponed rather than settled. An attempt that got its worker slot later than rateLate
// after its rate-limit slot gives both back and reserves again.
func (hd *Handler) take(ctx context.Context, j *job) (share *permit, done, deferred bool, err error) {
	for late := 0; ; late++ {
		if late == maxLate {
			// The worker is saturated: wait out a second rather than waste more slots.
			return nil, true, true, hd.hold(ctx, *j, admission{verdict: admitHold, until: hd.now().Add(broker.HoldDelays[0]), reason: heldRateLimit})
		}
		a, err := hd.admit(ctx, j)
		if err != nil {
			return nil, true, false, err
		}
		switch a.verdict {
		case admitHold:
			return nil, true, true, hd.hold(ctx, *j, a)
		case admitFail:
			return nil, true, false, hd.failHeld(ctx, *j, a.fail)
		case admitDisable:
			return nil, true, false, hd.disableOpen(ctx, *j)
		}
		if a.wait > 0 && !hd.waitForSlot(ctx, a.wait) {
			return nil, true, false, ctx.Err()
		}
		share, ok, err := hd.shares.acquire(ctx, j.webhook.ID)
		if err != nil {
			return nil, true, false, err
		}
		if !ok {
			return nil, true, true, hd.tracedPostpone(ctx, *j)
		}
		if err := hd.slots.Acquire(ctx, 1); err != nil {
			share.release()
			return nil, true, false, err
		}
		if hd.closedMeanwhile(j) {
			// Its breaker opened, or its webhook was paused, while it waited for its
			// places: admitted again, it is held.
			hd.slots.Release(1)
			share.release()
			continue
		}
		if j.slot.none() || !hd.now().After(j.slot.by) {
			return share, false, false, nil
		}
		// Late for its slot: going now could put one request too many in a second.
		hd.slots.Release(1)
		share.release()
		j.slot = rateSlot{}
		metricSlotsMissed.WithLabelValues("start_late").Inc()
	}
}

// closedMeanwhile reports whether j's webhook, open when j was admitted, has since been
// found behind an open breaker (j not its probe) or paused: a map lookup, without the clock
// for a webhook with neither.
func (hd *Handler) closedMeanwhile(j *job) bool {
	st := hd.guards.load()
	if _, open := st.breakers[j.webhook.ID]; open && !j.probe {
		return true
	}
	until, paused := st.pauses[j.webhook.ID]
	return paused && until.After(hd.now())
}

// waitForSlot waits d in memory, counted in webhookd_deliveries_waiting_for_limit, and reports
// false if ctx ended first.
func (hd *Handler) waitForSlot(ctx context.Context, d time.Duration) bool {
	metricWaitingForLimit.Inc()
	defer metricWaitingForLimit.Dec()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
