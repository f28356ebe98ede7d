package delivery_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// counter reads a counter of the default registry.
func counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name {
			var sum float64
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// A retry that comes back while its attempt's outcome cannot be written (the log's tables
// locked, reads still working) finds no row: it must wait for it, not be dead-lettered.
func TestRetryBeforeItsRowWaitsForIt(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(failFirst(1))
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{100 * time.Millisecond, 200 * time.Millisecond}})

	db, err := sql.Open("mysql", bed.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "LOCK TABLES attempts READ, deliveries READ"); err != nil {
		t.Fatalf("lock tables: %v", err)
	}
	before := counter(t, "webhookd_retries_waiting_for_row_total")
	bed.PublishEvent("TASK.CREATED", testbed.Event("locked", "TASK.CREATED", 1, ""))
	rc.Wait(t, "/a", 1, wait)
	testbed.Eventually(t, wait, "the retry to come back before its row and be parked again", func() bool {
		return counter(t, "webhookd_retries_waiting_for_row_total") >= before+2
	})
	if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		t.Fatalf("unlock tables: %v", err)
	}
	testbed.Eventually(t, wait, "the delivery to succeed on attempt 2", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=2") == 1
	})
	if n := bed.QueueDepth(bed.Queue + ".dead"); n != 0 {
		t.Errorf("dead queue holds %d messages, want 0", n)
	}
	if n := len(rc.Requests("/a")); n != 2 {
		t.Errorf("receiver got %d requests, want 2 (one failed, one retry)", n)
	}
}

// A retry message lost with its queue leaves the delivery pending: the repair sweep finds it
// overdue and drives it again.
func TestRepairSweepRedrivesALostRetry(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(failFirst(1))
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	ladder := retry.Ladder{3 * time.Second, 3 * time.Second}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder, RepairAfter: time.Second})

	bed.PublishEvent("TASK.CREATED", testbed.Event("lost", "TASK.CREATED", 1, ""))
	testbed.Eventually(t, wait, "the first attempt to be recorded pending", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='pending' AND attempts=1 AND due_at IS NOT NULL") == 1
	})
	purged, err := bed.Channel().QueuePurge(retry.QueueName(bed.Queue, 3*time.Second), false)
	if err != nil {
		t.Fatalf("purge retry queue: %v", err)
	}
	if purged != 1 {
		t.Fatalf("purged %d retry messages, want 1", purged)
	}
	repaired := counter(t, "webhookd_deliveries_repaired_total")
	testbed.Eventually(t, wait, "the repair sweep to deliver it", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=2 AND due_at IS NULL") == 1
	})
	if got := counter(t, "webhookd_deliveries_repaired_total"); got < repaired+1 {
		t.Errorf("deliveries repaired went from %v to %v, want at least one more", repaired, got)
	}
	if n := len(rc.Requests("/a")); n != 2 {
		t.Errorf("receiver got %d requests, want 2", n)
	}
}

// Two sweeps at once never claim one delivery twice.
func TestClaimOverdueTakesEachDeliveryOnce(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	const n = 300
	past := time.Now().Add(-time.Hour).UTC()
	for i := 0; i < n; i++ {
		bed.Exec("INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at) VALUES (?,?,1,'pending',1,?,?,?)",
			testbed.Unique("d"), testbed.Unique("e"), past, past, past)
	}
	ctx := context.Background()
	seen := make(chan string, 2*n)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				now := time.Now()
				ds, err := bed.Store.ClaimOverdue(ctx, now.Add(-time.Minute), now.Add(time.Hour), 50)
				if err != nil || len(ds) == 0 {
					errs <- err
					return
				}
				for _, d := range ds {
					seen <- d.ID
				}
			}
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("ClaimOverdue: %v", err)
		}
	}
	close(seen)
	got := map[string]int{}
	for id := range seen {
		got[id]++
	}
	if len(got) != n {
		t.Errorf("claimed %d distinct deliveries, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("delivery %s claimed %d times", id, c)
		}
	}
	if due, ok, err := bed.Store.OldestDue(ctx); err != nil || !ok || due.Before(time.Now().Add(30*time.Minute)) {
		t.Errorf("OldestDue = %v, %v, %v; want every due time moved an hour ahead", due, ok, err)
	}
}

// Event ids are compared exactly: "x", "x " and "X" are three events.
func TestEventIDsCompareExactly(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	bed.StartWorker(testbed.WorkerOptions{})
	ids := []string{"x", "x ", "X", "x  "}
	for _, id := range ids {
		bed.PublishEvent("TASK.CREATED", testbed.Event(id, "TASK.CREATED", 1, ""))
	}
	rc.Wait(t, "/a", len(ids), wait)
	testbed.Eventually(t, wait, "a succeeded delivery per id", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded'") == len(ids)
	})
	for _, id := range ids {
		ev, err := bed.Store.GetEvent(context.Background(), id)
		if err != nil || ev.ID != id {
			t.Errorf("GetEvent(%q) = %q, %v", id, ev.ID, err)
		}
		if _, err := bed.Store.GetDelivery(context.Background(), repository.DeliveryID(id, hook)); err != nil {
			t.Errorf("delivery of %q: %v", id, err)
		}
	}
}

// An event larger than the database takes in one packet can never be written: it goes to the
// dead queue with its reason, and intake goes on.
func TestEventOverMaxAllowedPacketIsDeadLettered(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	bed.StartWorker(testbed.WorkerOptions{MaxEventBytes: 64 << 20})
	var packet int
	if err := bed.Store.DB().Get(&packet, "SELECT @@max_allowed_packet"); err != nil {
		t.Fatal(err)
	}
	huge := testbed.Event("huge", "TASK.CREATED", 1, `"data":"`+strings.Repeat("x", packet+1)+`"`)
	bed.PublishEvent("TASK.CREATED", huge)
	bed.PublishEvent("TASK.CREATED", testbed.Event("small", "TASK.CREATED", 1, ""))
	msg := bed.Get(bed.Queue+".dead", wait)
	if reason, _ := msg.Headers[broker.HeaderError].(string); !strings.Contains(reason, "max_allowed_packet") {
		t.Errorf("dead-letter reason = %q, want it to name max_allowed_packet", reason)
	}
	rc.Wait(t, "/a", 1, wait)
	testbed.Eventually(t, wait, "the small event delivered", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='small' AND status='succeeded'") == 1
	})
	if n := bed.Count("SELECT COUNT(*) FROM events WHERE id='huge'"); n != 0 {
		t.Errorf("huge event stored %d times, want 0", n)
	}
}

// A forged retry is dead-lettered once it has waited RepairAfter, even one claiming to have
// waited since a time to come, and one whose attempt number jumps ahead of its delivery's
// row is never attempted.
func TestForgedRetriesEndInTheDeadQueue(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(*http.Request, int) (int, http.Header) { return http.StatusInternalServerError, nil })
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	bed.StartWorker(testbed.WorkerOptions{
		Ladder:      retry.Ladder{3 * time.Second, 3 * time.Second},
		RepairAfter: time.Second,
	})

	future := broker.Retry{DeliveryID: repository.DeliveryID("nobody", hook), Attempt: 2, Step: 1,
		WaitingSince: time.Now().Add(24 * time.Hour)}
	bed.Publish("", bed.Queue, future.Publishing(time.Now()))
	// An event whose attempts all fail gets a retry forged for attempt 99 beside its own.
	bed.PublishEvent("TASK.CREATED", testbed.Event("jumped", "TASK.CREATED", 1, ""))
	testbed.Eventually(t, wait, "the event's first attempt recorded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='jumped' AND attempts = 1") == 1
	})
	jumped := broker.Retry{DeliveryID: repository.DeliveryID("jumped", hook), Attempt: 99, Step: 1}
	bed.Publish("", bed.Queue, jumped.Publishing(time.Now()))

	dead := map[string]string{}
	for range 2 {
		msg := bed.Get(bed.Queue+".dead", wait)
		id, _ := msg.Headers[broker.HeaderDelivery].(string)
		dead[id], _ = msg.Headers[broker.HeaderError].(string)
	}
	for _, r := range []broker.Retry{future, jumped} {
		if reason, ok := dead[r.DeliveryID]; !ok || !strings.Contains(reason, "no row for it") {
			t.Errorf("retry for %s: dead-lettered %v with reason %q, want it dead-lettered for no row caught up", r.DeliveryID, ok, reason)
		}
	}
	testbed.Eventually(t, wait, "the event's delivery to fail after the ladder", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='jumped' AND status='failed' AND attempts=3") == 1
	})
	var attempts []string
	for _, r := range rc.Requests("/a") {
		attempts = append(attempts, r.Header.Get("X-Webhook-Attempt"))
	}
	if got := strings.Join(attempts, ","); got != "1,2,3" {
		t.Errorf("receiver got attempts %s, want 1,2,3", got)
	}
}
