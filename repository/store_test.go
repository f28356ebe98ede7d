package repository_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// TestClaimOnceUnderConcurrency claims the same event ids from many goroutines at once: the
// unique key must give each id to exactly one of them.
func TestClaimOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	const ids, copies = 50, 4
	var mu sync.Mutex
	owners := map[string]int{}
	var wg sync.WaitGroup
	for c := 0; c < copies; c++ {
		for i := 0; i < ids; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := "ev-" + string(rune('A'+i%26)) + string(rune('a'+i/26))
				ev := repository.Event{ID: id, Name: "A.B", AccountID: 1, OccurredAt: "2026-01-01T00:00:00Z", Data: []byte("null")}
				isNew, err := bed.Store.Claim(ctx, ev)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if isNew {
					mu.Lock()
					owners[id]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(owners) != ids {
		t.Errorf("%d ids claimed, want %d", len(owners), ids)
	}
	for id, n := range owners {
		if n != 1 {
			t.Errorf("event %s claimed %d times", id, n)
		}
	}
	if n := bed.Count("SELECT COUNT(*) FROM events"); n != ids {
		t.Errorf("events = %d, want %d", n, ids)
	}
}

func TestRecordNeverGoesBack(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	ev := repository.Event{ID: "r", Name: "A.B", AccountID: 1, OccurredAt: "x", Data: []byte("null")}
	if _, err := bed.Store.Claim(ctx, ev); err != nil {
		t.Fatal(err)
	}
	id := repository.DeliveryID("r", 9)
	rec := func(attempt int, status string, code int) {
		t.Helper()
		_, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: id, EventID: "r", WebhookID: 9, Attempt: attempt,
			Status: status, StatusCode: code, StartedAt: time.Now(), Duration: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
	}
	rec(2, repository.StatusSucceeded, 200)
	rec(1, repository.StatusPending, 500) // a late outcome of an older attempt
	d, err := bed.Store.GetDelivery(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != repository.StatusSucceeded || d.Attempts != 2 || d.LastStatusCode.Int64 != 200 {
		t.Errorf("delivery = %s attempts %d code %d, want succeeded 2 200", d.Status, d.Attempts, d.LastStatusCode.Int64)
	}
	if n := bed.Count("SELECT COUNT(*) FROM attempts WHERE delivery_id=?", id); n != 2 {
		t.Errorf("attempt rows = %d, want 2", n)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	old := time.Now().Add(-800 * time.Hour).UTC()
	for i, id := range []string{"old1", "old2", "old3", "new"} {
		ev := repository.Event{ID: id, Name: "A.B", AccountID: 1, OccurredAt: "x", Data: []byte("null")}
		if id != "new" {
			ev.ReceivedAt = old
		}
		if _, err := bed.Store.Claim(ctx, ev); err != nil {
			t.Fatal(err)
		}
		_, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: repository.DeliveryID(id, uint64(i+1)), EventID: id,
			WebhookID: uint64(i + 1), Attempt: 1, Status: repository.StatusSucceeded, StatusCode: 200, StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
	}
	bed.Exec("UPDATE deliveries SET updated_at=?, created_at=? WHERE event_id LIKE 'old%'", old, old)
	bed.Exec("UPDATE attempts SET started_at=? WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id LIKE 'old%')", old)
	n, err := bed.Store.Purge(ctx, time.Now().Add(-720*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 {
		t.Errorf("purged %d rows, want 9 (3 events, 3 deliveries, 3 attempts)", n)
	}
	for table, want := range map[string]int{"events": 1, "deliveries": 1, "attempts": 1} {
		if got := bed.Count("SELECT COUNT(*) FROM " + table); got != want {
			t.Errorf("%s rows left = %d, want %d", table, got, want)
		}
	}
}

// TestRecordAgainAppliedOnce records an outcome a second time, as a caller does when it cannot
// tell whether the first call was applied: the attempt is logged, and the failure counted, once.
func TestRecordAgainAppliedOnce(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "A.B", URL: "http://example.com/"})
	out := repository.Outcome{DeliveryID: repository.DeliveryID("again", hook), EventID: "again", WebhookID: hook,
		Attempt: 1, Status: repository.StatusFailed, StatusCode: 500, StartedAt: time.Now(), Duration: time.Millisecond,
		CountFailure: true}
	rec, err := bed.Store.Record(ctx, out)
	if err != nil || rec.FailuresInARow != 1 {
		t.Fatalf("Record = %+v, %v; want 1 failure in a row", rec, err)
	}
	out.Again = true
	if rec, err = bed.Store.Record(ctx, out); err != nil || rec.FailuresInARow != 1 {
		t.Fatalf("Record again = %+v, %v; want still 1 failure in a row", rec, err)
	}
	if n := bed.Count("SELECT COUNT(*) FROM attempts WHERE delivery_id=?", out.DeliveryID); n != 1 {
		t.Errorf("attempt rows = %d, want 1", n)
	}
	if n := bed.Count("SELECT consecutive_failures FROM webhooks WHERE id=?", hook); n != 1 {
		t.Errorf("consecutive_failures = %d, want 1", n)
	}
}
