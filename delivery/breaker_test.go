package delivery_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// notices collects the notifications published for the webhooks whose URL starts with
// prefix: the exchange is shared by every test.
type notices struct {
	t      *testing.T
	bed    *testbed.Bed
	queue  string
	prefix string
}

func watchNotices(t *testing.T, bed *testbed.Bed, prefix string) *notices {
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
	return &notices{t: t, bed: bed, queue: q.Name, prefix: prefix}
}

// wait waits until a notification with routing key key has come for each of the webhooks
// listed in want, and returns every notification of ours seen, by routing key.
func (n *notices) wait(timeout time.Duration, want ...string) map[string][]map[string]any {
	n.t.Helper()
	got := map[string][]map[string]any{}
	testbed.Eventually(n.t, timeout, fmt.Sprintf("notifications %v", want), func() bool {
		for {
			d, ok, err := n.bed.Channel().Get(n.queue, true)
			if err != nil {
				n.t.Fatalf("basic.get: %v", err)
			}
			if !ok {
				break
			}
			var body map[string]any
			json.Unmarshal(d.Body, &body)
			if u, _ := body["url"].(string); strings.HasPrefix(u, n.prefix) {
				got[d.RoutingKey] = append(got[d.RoutingKey], body)
			}
		}
		for _, k := range want {
			if len(got[k]) == 0 {
				return false
			}
		}
		return true
	})
	return got
}

// TestBreakerHoldsThenRecovers streams events to an endpoint that fails for longer than the
// whole ladder, with one worker and with two sharing the breaker: once BREAKER_AFTER attempts
// in a row have failed, the endpoint gets only the probes, one a second; when it answers
// again, the probe closes the breaker and every delivery succeeds; nothing failed, the
// webhook is still enabled, and both notifications were published once.
func TestBreakerHoldsThenRecovers(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			t.Parallel()
			bed := testbed.New(t)
			rc := testbed.NewReceiver(t)
			var down atomic.Bool
			down.Store(true)
			var mu sync.Mutex
			failedReqs := 0
			rc.Respond(func(r *http.Request, _ int) (int, http.Header) {
				if r.URL.Path == "/down" && down.Load() {
					mu.Lock()
					failedReqs++
					mu.Unlock()
					return http.StatusInternalServerError, nil
				}
				return http.StatusOK, nil
			})
			hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/down"})
			bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/up"})
			const after, probe = 3, time.Second
			ladder := retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond}
			for i := range workers {
				bed.StartWorker(testbed.WorkerOptions{Ladder: ladder, DisableAfter: 2, BreakerAfter: after, BreakerProbe: probe,
					BreakerHold: time.Hour, Name: fmt.Sprintf("%s-%d", bed.Name, i)})
			}
			ns := watchNotices(t, bed, rc.URL)
			// A steady stream: 20 events a second for 8 s, the endpoint down for the first 5 s.
			const events = 160
			start := time.Now()
			var downFor time.Duration
			pace := time.NewTicker(50 * time.Millisecond) // the stream's pace, not a wait for the worker
			defer pace.Stop()
			for i := range events {
				if i == 100 {
					down.Store(false)
					downFor = time.Since(start)
				}
				bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("b-%03d", i), "TASK.CREATED", 1, ""))
				<-pace.C
			}
			testbed.Eventually(t, time.Minute, "every delivery to succeed", func() bool {
				return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND status = 'succeeded'", hook) == events
			})
			got := ns.wait(wait, broker.NotificationCircuitOpened, broker.NotificationCircuitClosed)
			mu.Lock()
			n := failedReqs
			mu.Unlock()
			// BREAKER_AFTER failures, the attempts each worker had in flight when it opened
			// (the stream's pace allows few), and one probe a second.
			probes := int(downFor/probe) + 1
			bound := after + 2*workers + probes
			t.Logf("%d workers: endpoint down %v under %d events/s: %d requests while down (bound %d = %d to open + %d in flight + %d probes), then %d deliveries succeeded",
				workers, downFor.Round(time.Millisecond), 20, n, bound, after, 2*workers, probes, events)
			if n > bound {
				t.Errorf("the endpoint got %d requests while down, want at most %d", n, bound)
			}
			if n < after {
				t.Errorf("the endpoint got %d requests while down, fewer than BREAKER_AFTER %d", n, after)
			}
			if f := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'"); f != 0 {
				t.Errorf("%d deliveries not succeeded, want none", f)
			}
			if on := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id = ? AND enabled = 1 AND consecutive_failures = 0", hook); on != 1 {
				t.Error("the webhook was disabled or has failures in a row")
			}
			if open := bed.Count("SELECT COUNT(*) FROM breakers"); open != 0 {
				t.Errorf("%d breakers still open", open)
			}
			if len(got[broker.NotificationCircuitOpened]) != 1 || len(got[broker.NotificationCircuitClosed]) != 1 {
				t.Errorf("notifications %v, want one circuit_opened and one circuit_closed", got)
			}
			if left := bed.Count("SELECT COUNT(*) FROM outbox"); left != 0 {
				t.Errorf("%d notices left in the outbox", left)
			}
		})
	}
}

// TestBreakerOpenForTheWholeHold: an endpoint that never recovers, with a hold of 3 s: the
// held deliveries fail with reason "circuit open" once held that long, and the webhook is
// disabled and announced as DISABLE_AFTER would.
func TestBreakerOpenForTheWholeHold(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(*http.Request, int) (int, http.Header) { return http.StatusBadGateway, nil })
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/gone-for-good"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{200 * time.Millisecond}, BreakerAfter: 2,
		BreakerProbe: time.Second, BreakerHold: 3 * time.Second})
	ns := watchNotices(t, bed, rc.URL)
	for i := range 10 {
		bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("h-%d", i), "TASK.CREATED", 1, ""))
	}
	testbed.Eventually(t, 30*time.Second, "the webhook disabled", func() bool {
		return bed.Count("SELECT COUNT(*) FROM webhooks WHERE id = ? AND enabled = 0", hook) == 1
	})
	testbed.Eventually(t, 30*time.Second, "every delivery settled", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'") == 0
	})
	got := ns.wait(wait, broker.NotificationCircuitOpened, broker.NotificationDisabled)
	if r := got[broker.NotificationDisabled][0]["reason"]; r != "circuit open for 3s" {
		t.Errorf("webhook.disabled reason %v, want circuit open for 3s", r)
	}
	circuit := bed.Count("SELECT COUNT(*) FROM deliveries WHERE last_error = 'circuit open'")
	if circuit == 0 {
		t.Error("no delivery failed with reason circuit open")
	}
	if open := bed.Count("SELECT COUNT(*) FROM breakers"); open != 0 {
		t.Errorf("the disabled webhook's breaker is still open")
	}
	t.Logf("%d of 10 deliveries failed with reason circuit open, the others as the webhook was disabled; %d requests in all",
		circuit, len(rc.Requests("")))
}
