//go:build faults

package faults

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
)

// peakPerSecond is the most of times in any one-second window [t, t+1s).
func peakPerSecond(times []time.Time) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	peak, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < time.Second {
			j++
		}
		peak = max(peak, j-i)
	}
	return peak
}

// TestKillWorkerRateLimited runs two worker processes on three webhooks limited to 5, 20 and
// 50 attempts a second, with a backlog for each, and kills one of them with SIGKILL while
// deliveries wait for their slots, in memory and in the hold queues: nothing waiting is
// lost, no one-second window has more than the limit + 10 % of requests, and every request
// is attempt 1.
func TestKillWorkerRateLimited(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 3)
	limits := []int{5, 20, 50}
	for i, lim := range limits {
		bed.Exec("UPDATE webhooks SET rate_limit = ? WHERE id = ?", lim, l.Hooks[i])
	}
	a := StartProc(t, bed, ProcOptions{})
	StartProc(t, bed, ProcOptions{})
	flow := l.Flow(100, 5*time.Millisecond)
	slowest := l.Hooks[0]
	l.WaitHits(t, time.Minute, "deliveries to the 5/s webhook before the kill", func(hits []Hit) bool {
		n := 0
		for _, h := range hits {
			if h.Webhook == slowest && h.OK() {
				n++
			}
		}
		return n >= 30
	})
	held := a.Metric(`webhookd_deliveries_held_total{reason="rate_limit"}`)
	waiting := a.Metric("webhookd_deliveries_waiting_for_limit")
	a.Kill()
	t.Logf("killed a worker that had held %v deliveries for the limit and had %v waiting in memory; %d delivered so far", held, waiting, l.Delivered())
	StartProc(t, bed, ProcOptions{})
	flow.Wait(t)
	l.Check(t, "SIGKILL under rate limits", 2*time.Minute, Expect{DuplicatePercent: 5})
	for i, lim := range limits {
		var ts []time.Time
		for _, h := range l.Hits() {
			if h.Webhook != l.Hooks[i] {
				continue
			}
			ts = append(ts, h.At)
			if h.Attempt != 1 {
				t.Errorf("limit %d/s: a request with attempt %d, want 1", lim, h.Attempt)
			}
		}
		peak, allowed := peakPerSecond(ts), lim+lim/10
		t.Logf("limit %d/s: %d requests, peak %d in any one-second window (allowed %d)", lim, len(ts), peak, allowed)
		if peak > allowed {
			t.Errorf("limit %d/s: %d requests in one second, want at most %d", lim, peak, allowed)
		}
	}
}

// TestKillWorkerBreakerOpen streams events to a webhook whose endpoint fails, beside one that
// answers, under two worker processes sharing its breaker, and kills one of them with SIGKILL
// while the breaker is open: the deliveries held behind the breaker survive, the endpoint
// gets only the probes while down, and once it answers every delivery succeeds; the webhook
// stays enabled, and the breaker's two notifications are published once each.
func TestKillWorkerBreakerOpen(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	downHook := l.Hooks[0]
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var whileDown []time.Time
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Webhook == downHook && down.Load() {
			mu.Lock()
			whileDown = append(whileDown, h.At)
			mu.Unlock()
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	notices := bindNotices(t, bed)
	const after = 3
	opts := ProcOptions{Env: []string{"WEBHOOKD_BREAKER_AFTER=3", "WEBHOOKD_BREAKER_PROBE=1s", "WEBHOOKD_BREAKER_HOLD=1h", "WEBHOOKD_DISABLE_AFTER=2"}}
	a := StartProc(t, bed, opts)
	StartProc(t, bed, opts)
	start := time.Now()
	flow := l.Flow(240, 25*time.Millisecond)
	testbed.Eventually(t, time.Minute, "the breaker to open", func() bool {
		return bed.Count("SELECT COUNT(*) FROM breakers WHERE webhook_id = ?", downHook) == 1
	})
	a.Kill()
	killed := time.Now()
	t.Logf("killed a worker %v after the stream began, with the breaker open", killed.Sub(start).Round(time.Millisecond))
	StartProc(t, bed, opts)
	restarted := time.Now()
	// The new worker takes part: probes keep coming, one a second between the workers.
	testbed.Eventually(t, time.Minute, "three probes after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, at := range whileDown {
			if at.After(restarted) {
				n++
			}
		}
		return n >= 3
	})
	down.Store(false)
	downFor := time.Since(start)
	flow.Wait(t)
	l.Check(t, "SIGKILL with a breaker open", 2*time.Minute, Expect{DuplicatePercent: 5})
	mu.Lock()
	n := len(whileDown)
	mu.Unlock()
	// To open it, the attempts each of the three workers had in flight, one probe a second,
	// and what the killed worker had in flight, made again.
	probes := int(downFor/time.Second) + 1
	bound := after + 3*2 + probes + 2
	t.Logf("endpoint down %v: %d requests while down (bound %d), of %d deliveries to it", downFor.Round(time.Millisecond), n, bound, len(l.Events()))
	if n > bound {
		t.Errorf("the endpoint got %d requests while down, want at most %d", n, bound)
	}
	if on := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id = ? AND enabled = 1", downHook); on != 1 {
		t.Error("the webhook was disabled")
	}
	got := notices.wait(t, 30*time.Second, l.url)
	if got[broker.NotificationCircuitOpened] != 1 || got[broker.NotificationCircuitClosed] != 1 {
		t.Errorf("notifications %v, want one circuit_opened and one circuit_closed", got)
	}
}

// noticeQueue is a queue bound to the notification exchange for one test.
type noticeQueue struct {
	bed  *testbed.Bed
	name string
}

func bindNotices(t *testing.T, bed *testbed.Bed) *noticeQueue {
	t.Helper()
	ch := bed.Channel()
	if err := ch.ExchangeDeclare(broker.NotificationExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "webhook.*", broker.NotificationExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return &noticeQueue{bed: bed, name: q.Name}
}

// wait waits until both breaker notifications have come for webhooks whose URL starts with
// prefix, and counts those seen by routing key.
func (q *noticeQueue) wait(t *testing.T, timeout time.Duration, prefix string) map[string]int {
	t.Helper()
	got := map[string]int{}
	testbed.Eventually(t, timeout, "the breaker's notifications", func() bool {
		for {
			d, ok, err := q.bed.Channel().Get(q.name, true)
			if err != nil {
				t.Fatalf("basic.get: %v", err)
			}
			if !ok {
				return got[broker.NotificationCircuitOpened] > 0 && got[broker.NotificationCircuitClosed] > 0
			}
			var body struct {
				URL string `json:"url"`
			}
			json.Unmarshal(d.Body, &body)
			if strings.HasPrefix(body.URL, prefix) {
				got[d.RoutingKey]++
			}
		}
	})
	return got
}
