//go:build faults

package faults

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// The losses the ledger work closed (README, "The log is the ledger"), each under the real
// worker process and many deliveries at once, where delivery/ledger_test.go has one.

// failFirstAttempts answers 500 to every first attempt and 200 to the rest.
func failFirstAttempts(h Hit, r *http.Request) int {
	if h.Attempt == 1 {
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// attemptsByDelivery is the X-Webhook-Attempt of every request, per delivery, in order.
func attemptsByDelivery(hits []Hit) map[string][]int {
	out := map[string][]int{}
	for _, h := range hits {
		out[h.DeliveryID] = append(out[h.DeliveryID], h.Attempt)
	}
	return out
}

// lockLog takes LOCK TABLES attempts READ, deliveries READ on a connection of its own to the
// bed's database, as a backup tool does: reads go on, the log's writes wait. The returned
// function releases the lock; the connection closes when the test ends, in any case.
func lockLog(t *testing.T, bed *testbed.Bed) (unlock func()) {
	t.Helper()
	db, err := sql.Open("mysql", bed.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("connect for LOCK TABLES: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "LOCK TABLES attempts READ, deliveries READ"); err != nil {
		t.Fatalf("lock tables: %v", err)
	}
	return func() {
		t.Helper()
		if _, err := conn.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Fatalf("unlock tables: %v", err)
		}
	}
}

// TestTablesLockedAfterFailedAttempts holds LOCK TABLES attempts READ, deliveries READ while
// 100 first attempts fail with 500: each retry is parked before its outcome is recorded, and
// recording waits for the lock, so the retries come back to find no row, again and again.
// They must wait for their rows, not be dead-lettered: once the lock is released every
// delivery succeeds on attempt 2.
func TestTablesLockedAfterFailedAttempts(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	l.Respond(failFirstAttempts)
	ladder := retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond}
	p := StartProc(t, bed, ProcOptions{Ladder: ladder})
	const events = 50
	pairs := events * len(l.Hooks)

	unlock := lockLog(t, bed)
	locked := time.Now()
	for range events {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	l.WaitHits(t, 30*time.Second, "every first attempt answered 500", func(hits []Hit) bool {
		failed := map[string]bool{}
		for _, h := range hits {
			if h.Attempt == 1 && h.Status == http.StatusInternalServerError {
				failed[h.DeliveryID] = true
			}
		}
		return len(failed) == pairs
	})
	// Each retry comes back every 200 ms or so while its row cannot be written: parked again.
	testbed.Eventually(t, 30*time.Second, "every retry back and parked again at least three times", func() bool {
		n := map[string]int{}
		for _, id := range logged(t, p, "retry came back before its delivery's row: parked again", "delivery_id") {
			n[id]++
		}
		for _, ev := range l.Events() {
			for _, w := range l.Hooks {
				if n[repository.DeliveryID(ev, w)] < 3 {
					return false
				}
			}
		}
		return true
	})
	if n := bed.Count("SELECT COUNT(*) FROM deliveries"); n != 0 {
		t.Errorf("%d delivery rows written under the lock, want none", n)
	}
	for _, h := range l.Hits() {
		if h.Attempt != 1 {
			t.Fatalf("delivery %s: attempt %d made while its first attempt's outcome was not recorded", h.DeliveryID, h.Attempt)
		}
	}
	if n := bed.QueueDepth(bed.Queue + ".dead"); n != 0 {
		t.Fatalf("%d messages dead-lettered under the lock, want none", n)
	}
	held := time.Since(locked)
	waited := p.Metric("webhookd_retries_waiting_for_row_total")
	unlock()

	l.Check(t, "LOCK TABLES after failed first attempts", 60*time.Second, Expect{DuplicatePercent: 1})
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=2 AND due_at IS NULL"); n != pairs {
		t.Errorf("deliveries succeeded on attempt 2: %d, want %d", n, pairs)
	}
	for id, a := range attemptsByDelivery(l.Hits()) {
		if len(a) != 2 || a[0] != 1 || a[1] != 2 {
			t.Errorf("delivery %s: attempts %v, want [1 2]", id, a)
		}
	}
	if p.Exited() {
		t.Errorf("worker exited")
	}
	t.Logf("lock held %v (first ladder delay %v); retries parked again while waiting for their rows: %v",
		held.Round(10*time.Millisecond), ladder[0], waited)
}

// TestRetryQueuePurgedWithRetriesParked purges the first TTL queue while 80 failed deliveries
// wait in it: nothing in the broker remembers them any more, only their pending rows. The
// repair sweep (REPAIR_AFTER 3s) finds them overdue and re-drives every one.
func TestRetryQueuePurgedWithRetriesParked(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	l.Respond(failFirstAttempts)
	// Long enough that all 80 are parked together when the queue is purged; the sweep takes
	// them REPAIR_AFTER after they were due, so this is also most of the test's time.
	ladder := retry.Ladder{15 * time.Second, 30 * time.Second}
	const repairAfter = 3 * time.Second
	p := StartProc(t, bed, ProcOptions{Ladder: ladder, RepairAfter: repairAfter})
	const events = 40
	pairs := events * len(l.Hooks)
	for range events {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	parked := retry.QueueName(bed.Queue, ladder[0])
	testbed.Eventually(t, 10*time.Second, "80 retries parked and their first attempts recorded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='pending' AND attempts=1 AND due_at IS NOT NULL") == pairs &&
			bed.QueueDepth(parked) == pairs
	})
	purged, err := bed.Channel().QueuePurge(parked, false)
	if err != nil {
		t.Fatalf("purge %s: %v", parked, err)
	}
	if purged != pairs {
		t.Fatalf("purged %d retry messages, want %d", purged, pairs)
	}
	purgedAt := time.Now()

	l.Check(t, "retry queue purged with 80 retries parked", 60*time.Second, Expect{DuplicatePercent: 1})
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=2 AND due_at IS NULL"); n != pairs {
		t.Errorf("deliveries succeeded on attempt 2: %d, want %d", n, pairs)
	}
	for id, a := range attemptsByDelivery(l.Hits()) {
		if len(a) != 2 || a[0] != 1 || a[1] != 2 {
			t.Errorf("delivery %s: attempts %v, want [1 2]", id, a)
		}
	}
	repaired := p.Metric("webhookd_deliveries_repaired_total")
	if repaired < float64(pairs) {
		t.Errorf("webhookd_deliveries_repaired_total = %v, want at least %d", repaired, pairs)
	}
	t.Logf("purged %d; repaired %v; all settled %v after the purge", purged, repaired, time.Since(purgedAt).Round(100*time.Millisecond))
}

// TestEventIDsDifferingInCaseAndTrailingSpaces publishes events with ids x, "x ", X and
// "x  " to two webhooks: four events, eight deliveries, none taken for a duplicate of
// another (a PAD SPACE collation took "x " for "x"). A second copy of x and of "x " is still a
// duplicate, of exactly its own id.
func TestEventIDsDifferingInCaseAndTrailingSpaces(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	p := StartProc(t, bed, ProcOptions{})
	ids := []string{"x", "x ", "X", "x  "}
	for _, id := range ids {
		if err := l.Publish(id); err != nil {
			t.Fatal(err)
		}
	}
	l.Check(t, "event ids x, \"x \", X, \"x  \"", 30*time.Second, Expect{DuplicatePercent: 1})

	copies := []string{"x", "x "}
	for _, id := range copies {
		if err := l.Publish(id); err != nil {
			t.Fatal(err)
		}
	}
	testbed.Eventually(t, 20*time.Second, "both copies acked as duplicates", func() bool {
		return len(logged(t, p, "duplicate event ignored", "event_id")) == len(copies)
	})
	tally := l.Check(t, "event ids, second copies", 30*time.Second, Expect{})
	if tally.Duplicates != 0 || tally.Requests != len(ids)*len(l.Hooks) {
		t.Errorf("requests = %d, duplicates = %d; want %d and 0", tally.Requests, tally.Duplicates, len(ids)*len(l.Hooks))
	}
	if got := logged(t, p, "duplicate event ignored", "event_id"); !slices.Equal(got, []string{"x", "x "}) {
		t.Errorf("events acked as duplicates: %q, want exactly the second copies %q", got, copies)
	}

	var stored []string
	if err := bed.Store.DB().Select(&stored, "SELECT id FROM events ORDER BY HEX(id)"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"X", "x", "x ", "x  "}; !slices.Equal(stored, want) {
		t.Errorf("stored event ids %q, want %q", stored, want)
	}
	got := map[string]int{}
	for _, h := range l.Hits() {
		got[h.EventID+"\x00"+h.DeliveryID]++
	}
	for _, id := range ids {
		for _, w := range l.Hooks {
			if n := got[id+"\x00"+repository.DeliveryID(id, w)]; n != 1 {
				t.Errorf("event %q webhook %d: %d requests carrying that eventId, want 1", id, w, n)
			}
		}
	}
}

// logged returns field of every line of the worker's log with message msg, sorted.
func logged(t *testing.T, p *Proc, msg, field string) []string {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			v, _ := line[field].(string)
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
