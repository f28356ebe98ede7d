package delivery

import (
	"testing"
	"time"
)

// TestGate has a row per rule of the admission policy's breaker and pause gate, first match
// wins, on a clock passed in: probe 30s, hold 24h.
func TestGate(t *testing.T) {
	t.Parallel()
	p := policy{probe: 30 * time.Second, hold: 24 * time.Hour}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	in := func(d time.Duration) time.Time { return now.Add(d) }
	open := func(opened, probe time.Time) gateInput {
		return gateInput{open: true, breaker: breakerState{openedAt: opened, probeAt: probe}}
	}
	with := func(g gateInput, f func(*gateInput)) gateInput { f(&g); return g }
	hold := func(until time.Time, r holdReason) admission {
		return admission{verdict: admitHold, until: until, reason: r}
	}
	tests := []struct {
		name string
		in   gateInput
		want admission
	}{
		{"nothing known goes", gateInput{}, admission{verdict: admitGo}},
		{"a pause that has ended goes", gateInput{pausedUntil: now}, admission{verdict: admitGo}},
		{"paused waits until the pause ends", gateInput{pausedUntil: in(90 * time.Second)}, hold(in(90*time.Second), heldPaused)},
		{"open, probe not due, waits a probe interval", open(ago(time.Minute), in(10*time.Second)), hold(in(30*time.Second), heldCircuit)},
		{"open, probe due, goes if it claims the probe", open(ago(time.Minute), ago(time.Second)), admission{verdict: admitGo, claim: true}},
		{"open, probe due this instant, claims it", open(ago(time.Minute), now), admission{verdict: admitGo, claim: true}},
		{"open, the probe claimed for it, goes", with(open(ago(time.Minute), in(time.Second)), func(g *gateInput) { g.probe = true }), admission{verdict: admitGo}},
		{"open and paused: the pause first", with(open(ago(time.Minute), ago(time.Second)), func(g *gateInput) { g.pausedUntil = in(time.Minute) }), hold(in(time.Minute), heldPaused)},
		{"open and paused, probe claimed: still paused", with(open(ago(time.Minute), in(time.Second)), func(g *gateInput) { g.probe = true; g.pausedUntil = in(5 * time.Second) }), hold(in(5*time.Second), heldPaused)},
		{"held 10m waits as long again", with(open(ago(time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(4 * time.Minute) }), hold(in(4*time.Minute), heldCircuit)},
		{"held 5h waits the longest hold queue", with(open(ago(6*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(5 * time.Hour) }), hold(in(10*time.Minute), heldCircuit)},
		{"a breaker open longer than the hold disables, however long the delivery waited", with(open(ago(25*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(time.Minute) }), admission{verdict: admitDisable, fail: reasonCircuitOpen}},
		{"held to the hold's end", with(open(ago(23*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(24*time.Hour - 3*time.Second) }), hold(in(3*time.Second), heldCircuit)},
		{"held the whole hold fails", with(open(ago(23*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(24 * time.Hour) }), admission{verdict: admitFail, fail: reasonCircuitOpen}},
		{"held the whole hold fails even when paused", with(open(ago(23*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(25 * time.Hour); g.pausedUntil = in(time.Minute) }), admission{verdict: admitFail, fail: reasonCircuitOpen}},
		{"held the whole hold fails even when it has the probe", with(open(ago(23*time.Hour), in(10*time.Second)), func(g *gateInput) { g.circuitSince = ago(24 * time.Hour); g.probe = true }), admission{verdict: admitFail, fail: reasonCircuitOpen}},
		{"open for the whole hold disables", open(ago(24*time.Hour), in(10*time.Second)), admission{verdict: admitDisable, fail: reasonCircuitOpen}},
		{"a hold that began before a closed breaker is forgotten", gateInput{circuitSince: ago(48 * time.Hour)}, admission{verdict: admitGo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := p.gate(tt.in, now); got != tt.want {
				t.Errorf("gate(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestRateInterval: limit + 10 % consecutive slots (rounded down) span 1.2 s, so that requests
// up to rateTolerance late keep every one-second window within limit + 10 %, and the long-run
// rate never exceeds the limit.
func TestRateInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit int64
		want  time.Duration
	}{
		{1, 1200 * time.Millisecond},
		{5, 240 * time.Millisecond},
		{7, 171429 * time.Microsecond},
		{9, 133334 * time.Microsecond},
		{10, 109091 * time.Microsecond},
		{15, 75 * time.Millisecond},
		{50, 21819 * time.Microsecond},
		{100, 10910 * time.Microsecond},
		{1000, 1091 * time.Microsecond},
	}
	for _, tt := range tests {
		got := rateInterval(tt.limit)
		if got != tt.want {
			t.Errorf("rateInterval(%d) = %v, want %v", tt.limit, got, tt.want)
		}
		if rate := float64(time.Second) / float64(got); rate > float64(tt.limit) {
			t.Errorf("rateInterval(%d) = %v: %.2f a second, over the limit", tt.limit, got, rate)
		}
		allowed := tt.limit + tt.limit/10
		// A window that starts with a request rateTolerance late for its slot holds it and
		// the slots on time within the second after it: at most allowed.
		if n := 1 + int64((time.Second+rateTolerance-time.Nanosecond)/got); n > allowed {
			t.Errorf("rateInterval(%d): %d requests in a window, want at most %d", tt.limit, n, allowed)
		}
	}
}

// TestPaced: what a reservation's answer means, sent at 0 and answered after the round trip.
// The slot may be anywhere in the round trip on the worker's clock: the attempt goes at the
// latest it can be, and must start by rateLate after the earliest.
func TestPaced(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return sent.Add(d) }
	rtt := 2 * time.Millisecond
	slot := func(wait time.Duration) rateSlot { return rateSlot{at: at(rtt + wait), by: at(wait + rateLate)} }
	tests := []struct {
		name      string
		wait      time.Duration
		taken     bool
		rtt       time.Duration
		want      admission
		wantAgain bool
	}{
		{"a free slot now goes now", 0, true, rtt, admission{verdict: admitGo, slot: slot(0)}, false},
		{"a slot within a second waits in memory", 800 * time.Millisecond, true, rtt, admission{verdict: admitGo, wait: 800 * time.Millisecond, slot: slot(800 * time.Millisecond)}, false},
		{"a slot the shortest hold and its slack away waits in memory", 1625 * time.Millisecond, true, rtt, admission{verdict: admitGo, wait: 1625 * time.Millisecond, slot: slot(1625 * time.Millisecond)}, false},
		{"a slot further than that is held", 1700 * time.Millisecond, true, rtt,
			admission{verdict: admitHold, until: at(rtt + 1700*time.Millisecond - holdSlack), reason: heldRateLimit, slot: slot(1700 * time.Millisecond)}, false},
		{"a slot further away is held, to be back before it, slot kept", 7 * time.Second, true, rtt,
			admission{verdict: admitHold, until: at(rtt + 7*time.Second - holdSlack), reason: heldRateLimit, slot: slot(7 * time.Second)}, false},
		{"an answer slower than rateLate cannot place the slot", 300 * time.Millisecond, true, rateLate + time.Millisecond, admission{}, true},
		{"an answer of exactly rateLate can", 0, true, rateLate, admission{verdict: admitGo, slot: rateSlot{at: at(rateLate), by: at(rateLate)}}, false},
		{"beyond the horizon: held until the slot is within it", rateHorizon + 3*time.Minute, false, rtt,
			admission{verdict: admitHold, until: at(rtt + 3*time.Minute), reason: heldRateLimit}, false},
		{"just beyond the horizon: held the shortest hold", rateHorizon + time.Millisecond, false, rtt,
			admission{verdict: admitHold, until: at(rtt + time.Second), reason: heldRateLimit}, false},
	}
	for _, tt := range tests {
		got, again := paced(tt.wait, tt.taken, sent, sent.Add(tt.rtt))
		if got != tt.want || again != tt.wantAgain {
			t.Errorf("%s: paced(%v, %v, rtt %v)\n got %+v, %v\nwant %+v, %v", tt.name, tt.wait, tt.taken, tt.rtt, got, again, tt.want, tt.wantAgain)
		}
	}
}

func TestSlotted(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	slot := func(at time.Duration) rateSlot { return rateSlot{at: in(at), by: in(at + 40*time.Millisecond)} }
	tests := []struct {
		name      string
		slot      rateSlot
		want      admission
		wantAgain bool
	}{
		{"slot now goes", slot(0), admission{verdict: admitGo, slot: slot(0)}, false},
		{"slot passed, but not its by, goes", slot(-40 * time.Millisecond), admission{verdict: admitGo, slot: slot(-40 * time.Millisecond)}, false},
		{"slot past its by reserves again", slot(-41 * time.Millisecond), admission{}, true},
		{"slot in 400ms waits in memory", slot(400 * time.Millisecond), admission{verdict: admitGo, wait: 400 * time.Millisecond, slot: slot(400 * time.Millisecond)}, false},
		{"slot in 1.2s waits in memory", slot(1200 * time.Millisecond), admission{verdict: admitGo, wait: 1200 * time.Millisecond, slot: slot(1200 * time.Millisecond)}, false},
		{"slot in 3s is held again, to be back before it", slot(3 * time.Second), admission{verdict: admitHold, until: in(3*time.Second - holdSlack), reason: heldRateLimit, slot: slot(3 * time.Second)}, false},
	}
	for _, tt := range tests {
		got, again := slotted(tt.slot, now)
		if got != tt.want || again != tt.wantAgain {
			t.Errorf("%s: slotted = %+v, %v; want %+v, %v", tt.name, got, again, tt.want, tt.wantAgain)
		}
	}
}

func TestHoldDelay(t *testing.T) {
	t.Parallel()
	tests := []struct{ wait, want time.Duration }{
		{0, time.Second},
		{-time.Second, time.Second},
		{500 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{4999 * time.Millisecond, time.Second},
		{5 * time.Second, 5 * time.Second},
		{29 * time.Second, 5 * time.Second},
		{90 * time.Second, 30 * time.Second},
		{2 * time.Minute, 2 * time.Minute},
		{9 * time.Minute, 2 * time.Minute},
		{24 * time.Hour, 10 * time.Minute},
	}
	for _, tt := range tests {
		if got := holdDelay(tt.wait); got != tt.want {
			t.Errorf("holdDelay(%v) = %v, want %v", tt.wait, got, tt.want)
		}
	}
}
