//go:build faults

package faults

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// hold keeps a request for d, or until the worker gives up on it, and answers 200.
func hold(r *http.Request, d time.Duration) int {
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
	return http.StatusOK
}

// TestKillWorker kills the worker process with SIGKILL twice while events flow and requests
// are in flight, and starts a new one each time: nothing may be lost.
func TestKillWorker(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 3)
	// Slow enough that many attempts are in flight when the worker dies.
	l.Respond(func(h Hit, r *http.Request) int { return hold(r, 20*time.Millisecond) })
	p := StartProc(t, bed, ProcOptions{})
	flow := l.Flow(600, 5*time.Millisecond)
	pairs := 600 * len(l.Hooks)
	for _, at := range []int{pairs / 5, pairs / 2} {
		testbed.Eventually(t, time.Minute, "deliveries before the kill", func() bool { return l.Delivered() >= at })
		p.Kill()
		t.Logf("killed the worker after %d deliveries, %d events published", l.Delivered(), flow.Published())
		p = StartProc(t, bed, ProcOptions{})
	}
	flow.Wait(t)
	l.Check(t, "SIGKILL", 90*time.Second, Expect{DuplicatePercent: 5})
}

// TestKillWorkerWithSlowWebhook kills the worker twice while a slow webhook's deliveries are
// being postponed, many to a message, beside a quick webhook's: nothing may be lost, and the
// slow webhook never has more than its share of attempts in flight.
func TestKillWorkerWithSlowWebhook(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	slow := l.Hooks[0]
	var mu sync.Mutex
	inFlight, most := 0, 0
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Webhook != slow {
			return http.StatusOK
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		return hold(r, 300*time.Millisecond) // slower than the worker's 250 ms
	})
	const concurrency = 16 // a share of 4 per webhook
	p := StartProc(t, bed, ProcOptions{Concurrency: concurrency})
	flow := l.Flow(100, 5*time.Millisecond)
	slowDone := func(n int) func([]Hit) bool {
		return func(hits []Hit) bool {
			done := 0
			for _, h := range hits {
				if h.Webhook == slow && h.OK() {
					done++
				}
			}
			return done >= n
		}
	}
	for _, at := range []int{20, 50} {
		l.WaitHits(t, time.Minute, "slow deliveries before the kill", slowDone(at))
		if n := p.Metric("webhookd_deliveries_postponed_total"); n <= 0 {
			t.Errorf("worker postponed %v deliveries before the kill, want some", n)
		}
		p.Kill()
		t.Logf("killed the worker after %d deliveries, %d events published", l.Delivered(), flow.Published())
		p = StartProc(t, bed, ProcOptions{Concurrency: concurrency})
	}
	flow.Wait(t)
	l.Check(t, "SIGKILL with a slow webhook", 2*time.Minute, Expect{DuplicatePercent: 10})
	mu.Lock()
	defer mu.Unlock()
	// Each worker keeps its own shares: attempts of a killed worker may overlap the next one's.
	if most > 2*concurrency/4 {
		t.Errorf("slow webhook had up to %d attempts in flight, want at most its share of %d per worker", most, concurrency/4)
	}
}

// TestSigtermDuringSlowDelivery sends SIGTERM while a delivery is in flight. A delivery that
// finishes within SHUTDOWN_TIMEOUT is finished and recorded, and the worker exits 0 within the
// timeout; one that takes longer is abandoned, its message goes back to the queue, and the
// next worker delivers it.
func TestSigtermDuringSlowDelivery(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	slowA, slowB := l.NextID(), l.NextID()
	var mu sync.Mutex
	held := map[string]bool{}
	l.Respond(func(h Hit, r *http.Request) int {
		mu.Lock()
		first := !held[h.DeliveryID]
		held[h.DeliveryID] = true
		mu.Unlock()
		switch {
		case h.EventID == slowA && first:
			return hold(r, 3*time.Second)
		case h.EventID == slowB && first:
			return hold(r, 30*time.Second)
		}
		return http.StatusOK
	})
	slowHits := func(id string) (n, ok, abandoned int) {
		for _, h := range l.Hits() {
			if h.EventID == id {
				n++
				if h.OK() {
					ok++
				}
				if h.Done && h.Status == 0 {
					abandoned++
				}
			}
		}
		return
	}

	// A delivery shorter than the shutdown timeout is finished.
	const shutdownA = 10 * time.Second
	p := StartProc(t, bed, ProcOptions{ShutdownTimeout: shutdownA})
	flow := l.Flow(50, 10*time.Millisecond)
	flow.Wait(t)
	if err := l.Publish(slowA); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "the slow requests to arrive", func() bool { n, _, _ := slowHits(slowA); return n == len(l.Hooks) })
	sent := time.Now()
	p.Signal(syscall.SIGTERM)
	code, ok := p.Wait(shutdownA + 5*time.Second)
	took := time.Since(sent)
	switch {
	case !ok:
		t.Fatalf("worker still running %v after SIGTERM", shutdownA+5*time.Second)
	case code != 0:
		t.Errorf("worker exited %d after SIGTERM, want 0", code)
	case took >= shutdownA:
		t.Errorf("worker took %v to exit, more than SHUTDOWN_TIMEOUT %v", took, shutdownA)
	}
	if _, okA, _ := slowHits(slowA); okA != len(l.Hooks) {
		t.Errorf("slow deliveries answered 200: %d, want %d: the worker did not wait for them", okA, len(l.Hooks))
	}
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id=? AND status='succeeded'", slowA); n != len(l.Hooks) {
		t.Errorf("slow deliveries recorded as succeeded before exit: %d, want %d", n, len(l.Hooks))
	}
	t.Logf("SIGTERM with a 3s delivery in flight: exit %d after %v", code, took.Round(10*time.Millisecond))

	// A delivery longer than the shutdown timeout is abandoned and goes back to the queue.
	const shutdownB = 2 * time.Second
	p = StartProc(t, bed, ProcOptions{ShutdownTimeout: shutdownB, HTTPTimeout: time.Minute})
	if err := l.Publish(slowB); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "the slow requests to arrive", func() bool { n, _, _ := slowHits(slowB); return n == len(l.Hooks) })
	sent = time.Now()
	p.Signal(syscall.SIGTERM)
	code, ok = p.Wait(shutdownB + 10*time.Second)
	took = time.Since(sent)
	switch {
	case !ok:
		t.Fatalf("worker still running %v after SIGTERM", shutdownB+10*time.Second)
	case code != 0:
		t.Errorf("worker exited %d after SIGTERM, want 0", code)
	case took > shutdownB+3*time.Second:
		t.Errorf("worker took %v to exit, want about SHUTDOWN_TIMEOUT %v", took, shutdownB)
	}
	t.Logf("SIGTERM with a 30s delivery in flight: exit %d after %v", code, took.Round(10*time.Millisecond))
	testbed.Eventually(t, 10*time.Second, "the receiver to see the abandoned requests closed", func() bool {
		_, _, ab := slowHits(slowB)
		return ab == len(l.Hooks)
	})
	if n := bed.Count("SELECT COUNT(*) FROM events WHERE id=?", slowB); n != 1 {
		t.Errorf("abandoned event stored %d times, want once", n)
	}
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id=? AND (attempts > 0 OR status <> 'pending')", slowB); n != 0 {
		t.Errorf("abandoned deliveries with an outcome: %d, want none", n)
	}
	if n := bed.QueueDepth(bed.Queue); n != 1 {
		t.Errorf("work queue holds %d ready messages after the shutdown, want the abandoned one back", n)
	}

	StartProc(t, bed, ProcOptions{})
	l.Check(t, "SIGTERM", 60*time.Second, Expect{DuplicatePercent: 1})
	for _, w := range l.Hooks {
		id := repository.DeliveryID(slowB, w)
		var got []Hit
		for _, h := range l.Hits() {
			if h.DeliveryID == id {
				got = append(got, h)
			}
		}
		if len(got) != 2 || !got[1].OK() {
			t.Errorf("delivery %s: %d requests (%+v), want the abandoned one and one answered 200", id, len(got), got)
		}
	}
}
