package delivery_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// TestSlowWebhookPostponed sends events to a webhook that answers after 1.5 s and to a quick
// one, with a share of one attempt per webhook. The slow webhook never has two attempts in
// flight; its deliveries wait in the retry queue instead, and each is still made exactly once,
// as attempt 1. The quick webhook is not held up.
func TestSlowWebhookPostponed(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	var mu sync.Mutex
	inFlight, most := 0, 0
	rc.Respond(func(r *http.Request, _ int) (int, http.Header) {
		if r.URL.Path != "/slow" {
			return http.StatusOK, nil
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		// The endpoint is slow: this is its behaviour, not a wait for the worker.
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-r.Context().Done():
		}
		return http.StatusOK, nil
	})
	slow := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/slow"})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/fast"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{200 * time.Millisecond}, Concurrency: 4})
	const n = 4
	ids := []string{"slow-a", "slow-b", "slow-c", "slow-d"}
	for _, id := range ids {
		bed.PublishEvent("TASK.CREATED", testbed.Event(id, "TASK.CREATED", 1, ""))
	}

	fast := rc.Wait(t, "/fast", n, wait)
	slowNow := len(rc.Requests("/slow"))
	t.Logf("when the %d quick deliveries had arrived, the slow webhook had had %d requests", n, slowNow)
	testbed.Eventually(t, 30*time.Second, "every slow delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id=? AND status='succeeded'", slow) == n
	})
	seen := map[string]int{}
	for _, r := range rc.Requests("/slow") {
		seen[r.Header.Get("X-Webhook-Delivery")]++
		if got := r.Header.Get("X-Webhook-Attempt"); got != "1" {
			t.Errorf("slow request: X-Webhook-Attempt = %s, want 1 (a postponement uses no attempt)", got)
		}
	}
	for _, id := range ids {
		if got := seen[repository.DeliveryID(id, slow)]; got != 1 {
			t.Errorf("slow delivery of %s made %d times, want once", id, got)
		}
	}
	if got := bed.Count("SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id=?", slow); got != n {
		t.Errorf("slow webhook attempt rows = %d, want %d", got, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 1 {
		t.Errorf("slow webhook had up to %d attempts in flight, want its share of 1", most)
	}
	for _, r := range fast {
		if got := r.Header.Get("X-Webhook-Attempt"); got != "1" {
			t.Errorf("quick request: X-Webhook-Attempt = %s, want 1", got)
		}
	}
}

// TestSlowWebhooksTogetherDoNotStallOthers sends events to four webhooks whose endpoints hang
// and to a quick one, with 8 attempt slots: a share of 2 each, and 4 for the slow webhooks
// together. The hanging attempts time out after a second, and the quick webhook gets every
// event while the others still hang; only then do the endpoints answer, and every slow
// delivery, postponed or retried meanwhile, succeeds. This is the end-to-end view: the
// bounds themselves are checked on a fake clock in shares_test.go.
func TestSlowWebhooksTogetherDoNotStallOthers(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	hang := make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(hang) }) }
	t.Cleanup(answer)
	rc.Respond(func(r *http.Request, _ int) (int, http.Header) {
		if r.URL.Path == "/fast" {
			return http.StatusOK, nil
		}
		// The endpoints hang until the quick webhook has had every event: their behaviour,
		// not a wait for the worker.
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return http.StatusOK, nil
	})
	var slow []uint64
	for i := range 4 {
		slow = append(slow, bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/slow" + strconv.Itoa(i)}))
	}
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/fast"})
	ladder := retry.Ladder{200 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond,
		500 * time.Millisecond, 600 * time.Millisecond, 700 * time.Millisecond}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder, Concurrency: 8, HTTPTimeout: time.Second})
	const n = 200
	for i := range n {
		bed.PublishEvent("TASK.CREATED", testbed.Event("stall-"+strconv.Itoa(i), "TASK.CREATED", 1, ""))
	}

	rc.Wait(t, "/fast", n, wait)
	answer()
	testbed.Eventually(t, 60*time.Second, "every slow delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id IN (?,?,?,?) AND status='succeeded'",
			slow[0], slow[1], slow[2], slow[3]) == 4*n
	})
}
