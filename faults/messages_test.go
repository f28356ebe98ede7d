//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// TestRetryQueueDeleted deletes the first TTL queue of the ladder, so that parking a failed
// delivery there is returned as unroutable. The event's message must not be acked: it comes
// back and the attempt is made again, until the queue is declared again.
func TestRetryQueueDeleted(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	ladder := retry.Ladder{300 * time.Millisecond, 600 * time.Millisecond}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	for range 10 {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	testbed.Eventually(t, 30*time.Second, "the first events delivered", func() bool { return l.Delivered() == 10*len(l.Hooks) })

	// Empty: no delivery waits there (quorum queues have no if-empty delete).
	parked := retry.QueueName(bed.Queue, ladder[0])
	if n := bed.QueueDepth(parked); n != 0 {
		t.Fatalf("%s holds %d messages, want none", parked, n)
	}
	if _, err := bed.Channel().QueueDelete(parked, false, false, false); err != nil {
		t.Fatalf("delete %s: %v", parked, err)
	}
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Attempt == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	var failing []string
	for range 10 {
		id := l.NextID()
		failing = append(failing, id)
		if err := l.Publish(id); err != nil {
			t.Fatal(err)
		}
	}
	firstAttempts := func(hits []Hit) map[string]int {
		n := map[string]int{}
		for _, h := range hits {
			if h.Attempt == 1 && h.Status == http.StatusInternalServerError {
				n[h.DeliveryID]++
			}
		}
		return n
	}
	// Each failed first attempt finds nowhere to park: the message comes back, and the
	// attempt is made again, at least three times for every delivery.
	l.WaitHits(t, 30*time.Second, "first attempts made again and again", func(hits []Hit) bool {
		n := firstAttempts(hits)
		for _, ev := range failing {
			for _, w := range l.Hooks {
				if n[repository.DeliveryID(ev, w)] < 3 {
					return false
				}
			}
		}
		return true
	})
	recorded := 0
	for _, ev := range failing {
		recorded += bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id=? AND (attempts > 0 OR status <> 'pending')", ev)
	}
	if recorded != 0 {
		t.Errorf("failing deliveries with a recorded outcome: %d, want none (the outcome waits for the retry to be parked)", recorded)
	}
	// The broker's counts lag by seconds; the state lasts as long as the queue is missing.
	var q rabbitQueue
	if !poll(15*time.Second, 500*time.Millisecond, func() bool {
		qs, err := queues(bed.Queue)
		q = qs[bed.Queue]
		return err == nil && q.Messages == len(failing)
	}) {
		t.Errorf("work queue holds %d messages, want the %d events whose retry could not be parked", q.Messages, len(failing))
	}

	// Declared again, as the worker declares it, the queue takes the retries.
	topo := broker.Topology{Exchange: bed.Exchange, Queue: bed.Queue, QueueType: "quorum", Ladder: ladder}
	if err := topo.Declare(bed.Channel()); err != nil {
		t.Fatalf("declare the topology again: %v", err)
	}
	tally := l.Check(t, "retry queue deleted", 60*time.Second, Expect{DuplicatePercent: 1})
	t.Logf("first attempts made before the queue came back: %d", tally.Refused)
}

// TestForgedXDeath publishes events that carry x-death headers claiming many earlier
// deaths, as a message that went through another system's dead-lettering might. Attempts
// must be counted from webhookd's own header: each delivery goes 1, 2, 3 and succeeds.
func TestForgedXDeath(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	ladder := retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Attempt < 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})

	death := func(count int64, queue string) amqp.Table {
		return amqp.Table{
			"count": count, "reason": "expired", "queue": queue, "exchange": "",
			"routing-keys": []any{bed.Queue}, "time": time.Now().Truncate(time.Second),
		}
	}
	forged := []amqp.Table{
		{"x-death": []any{death(99, retry.QueueName(bed.Queue, ladder[0]))}},
		{"x-death": []any{death(3, retry.QueueName(bed.Queue, ladder[2])), death(7, bed.Queue)},
			"x-first-death-queue": bed.Queue, "x-first-death-reason": "rejected", "x-last-death-queue": bed.Queue},
		{"x-death": "not a list"},
		{"x-death": []any{amqp.Table{"count": "many"}}},
		// The worker's own retry headers on an event, as a confused publisher might set them.
		{"x-death": []any{death(1, bed.Queue)}, broker.HeaderAttempt: int32(4), broker.HeaderStep: int32(2)},
	}
	var events []string
	for round := range 4 {
		for _, h := range forged {
			id := l.NextID()
			events = append(events, id)
			if err := l.PublishEvent(id, amqp.Publishing{Headers: h}); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	l.Check(t, "forged x-death", 60*time.Second, Expect{DuplicatePercent: 1})
	byDelivery := map[string][]int{}
	for _, h := range l.Hits() {
		byDelivery[h.DeliveryID] = append(byDelivery[h.DeliveryID], h.Attempt)
	}
	for _, ev := range events {
		for _, w := range l.Hooks {
			id := repository.DeliveryID(ev, w)
			if got := fmt.Sprint(byDelivery[id]); got != "[1 2 3]" {
				t.Errorf("event %s webhook %d: attempts %s, want [1 2 3]", ev, w, got)
			}
		}
	}
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=3"); n != len(events)*len(l.Hooks) {
		t.Errorf("deliveries succeeded at attempt 3: %d, want %d", n, len(events)*len(l.Hooks))
	}
}

// TestDuplicateAndRedeliverAtOnce publishes each event a second time and, at the same moment,
// asks for every delivery to be redelivered three times: twice by the raw message the
// monolith may publish, once by `webhookd redeliver --event`. The second copy of an event
// must be ignored and each redelivery must make exactly one more attempt.
func TestDuplicateAndRedeliverAtOnce(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	bed.StartWorker(testbed.WorkerOptions{})
	var events []string
	for range 8 {
		id := l.NextID()
		events = append(events, id)
		if err := l.Publish(id); err != nil {
			t.Fatal(err)
		}
	}
	pairs := len(events) * len(l.Hooks)
	testbed.Eventually(t, 30*time.Second, "every delivery claimed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries") == pairs
	})

	const redeliveries = 3
	var wg sync.WaitGroup
	errs := make(chan error, 4*pairs)
	start := make(chan struct{})
	for _, ev := range events {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			errs <- l.Publish(ev)
		}()
		go func() {
			defer wg.Done()
			<-start
			out, err := redeliverCommand(bed, "--event", ev)
			if err == nil && !strings.HasPrefix(strings.TrimSpace(out), fmt.Sprintf("%d redeliveries published", len(l.Hooks))) {
				err = fmt.Errorf("webhookd redeliver --event %s printed %q", ev, out)
			}
			errs <- err
		}()
		for _, w := range l.Hooks {
			id := repository.DeliveryID(ev, w)
			l.ExpectExtra(id, redeliveries)
			body, _ := json.Marshal(map[string]string{"redeliver": id})
			for range redeliveries - 1 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs <- l.PublishRaw("", bed.Queue, amqp.Publishing{Type: broker.TypeRedeliver, ContentType: "application/json", Body: body})
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	tally := l.Check(t, "duplicate + redeliver at once", 60*time.Second, Expect{DuplicatePercent: 1})
	if want := pairs * (1 + redeliveries); tally.Requests != want {
		t.Errorf("requests = %d, want %d: one per delivery and one per redelivery, none for the second copies", tally.Requests, want)
	}
	attempts := map[string][]int{}
	for _, h := range l.Hits() {
		attempts[h.DeliveryID] = append(attempts[h.DeliveryID], h.Attempt)
	}
	for id, a := range attempts {
		t.Logf("delivery %s: attempt headers %v", id, a)
		break
	}
}

// redeliverCommand runs `webhookd redeliver` against the bed, with the test worker's default
// ladder.
func redeliverCommand(bed *testbed.Bed, args ...string) (string, error) {
	cmd := exec.Command(bin, append([]string{"redeliver"}, args...)...)
	cmd.Env = append(os.Environ(),
		"WEBHOOKD_AMQP_URL="+testbed.AMQPURL,
		"WEBHOOKD_MYSQL_DSN="+bed.DSN,
		"WEBHOOKD_EXCHANGE="+bed.Exchange,
		"WEBHOOKD_QUEUE="+bed.Queue,
		bed.RetryDelaysEnv(testbed.DefaultLadder),
	)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return string(out), fmt.Errorf("webhookd redeliver %v: %v: %s", args, err, stderr)
	}
	return string(out), nil
}
