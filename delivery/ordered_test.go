package delivery_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// Several workers, one ordered webhook, many objects' events published interleaved, some first
// attempts failing: per object every delivery succeeds, in publish order, numbered 1, 2, 3…,
// each started only after the one before succeeded; different objects are delivered at once;
// an unordered webhook on the same events gets them all as usual.
func TestOrderedWebhookDeliversEachObjectInOrder(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewOrderedReceiver(t, func(i int) bool { return i%4 == 1 })
	plain := testbed.NewReceiver(t)
	ordered := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.UPDATED", URL: rc.URL + "/ordered"})
	bed.Exec("UPDATE webhooks SET ordered = 1 WHERE id = ?", ordered)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.UPDATED", URL: plain.URL + "/plain"})
	ladder := retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond}
	for i := range 2 {
		bed.StartWorker(testbed.WorkerOptions{Ladder: ladder, Name: fmt.Sprintf("%s-%d", bed.Name, i)})
	}

	const objects, perObject = 20, 8
	bed.PublishOrdered("TASK.UPDATED", objects, perObject)
	testbed.Eventually(t, wait, "every ordered delivery to succeed", func() bool { return rc.Succeeded() == objects*perObject })
	plain.Wait(t, "/plain", objects*perObject, wait)
	testbed.Eventually(t, wait, "every delivery's row to say succeeded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'") == 0
	})
	duplicates, most := rc.Check(t, objects, perObject)
	if duplicates != 0 {
		t.Errorf("%d duplicate requests without a fault, want none", duplicates)
	}
	if most < 2 {
		t.Errorf("at most %d ordered requests in flight at once: different objects must go in parallel", most)
	}
}

// A redelivery of an ordered webhook's delivery is an explicit request: it goes at once, with
// its sequence number, even while an earlier delivery of its object waits out the ladder; the
// earlier ones then go in order, and the redelivered one is not sent again.
func TestOrderedRedeliveryGoesAtOnce(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewOrderedReceiver(t, func(i int) bool { return i == 0 })
	ordered := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.UPDATED", URL: rc.URL + "/ordered"})
	bed.Exec("UPDATE webhooks SET ordered = 1 WHERE id = ?", ordered)
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{3 * time.Second}})
	bed.PublishOrdered("TASK.UPDATED", 1, 3)
	testbed.Eventually(t, wait, "the first event's failed attempt", func() bool { return len(rc.Hits()) == 1 })
	third := repository.DeliveryID(testbed.OrderedEventID("o0", 2), ordered)
	testbed.Eventually(t, wait, "the third event sequenced", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE id = ?", third) == 1
	})
	bed.Publish("", bed.Queue, broker.Redelivery(third, time.Now()))
	testbed.Eventually(t, wait, "every event delivered", func() bool { return rc.Succeeded() == 3 })
	var got []string
	for _, h := range rc.Hits() {
		got = append(got, fmt.Sprintf("%d/%d/%s/%d", h.Index, h.Attempt, h.Sequence, h.Status))
	}
	// event/attempt/sequence/status: the first fails, the third goes at once, then the first
	// and the second in turn.
	if want := "0/1/1/500 2/1/3/200 0/2/1/200 1/1/2/200"; strings.Join(got, " ") != want {
		t.Errorf("requests %s, want %s", strings.Join(got, " "), want)
	}
}
