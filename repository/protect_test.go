package repository_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// TestReserveSpacesSlots reserves slots of one webhook from many goroutines at once, as
// several workers would: the slots taken are interval apart on the database's clock, a slot
// beyond the horizon is refused without being taken, and the refusal says how far the free
// slot is.
func TestReserveSpacesSlots(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	const interval, n = 10 * time.Millisecond, 40
	horizon := 255 * time.Millisecond // 26 slots at once: 0, 10, …, 250 ms
	var dbStart time.Time
	if err := bed.Store.DB().Get(&dbStart, "SELECT NOW(6)"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	taken := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := bed.Store.Reserve(ctx, 7, interval, 0, horizon)
			wait, ok := r.Wait, r.Taken
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok && wait > horizon:
				t.Errorf("took a slot %v away, beyond the horizon %v", wait, horizon)
			case ok:
				taken++
			case wait <= horizon:
				t.Errorf("refused with the free slot %v away, within the horizon %v", wait, horizon)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	// Time passes while they run: slots that were beyond the horizon come within it.
	if most := 26 + int(took/interval) + 1; taken < 26 || taken > most {
		t.Errorf("%d slots taken of %d asked in %v, want 26 to %d", taken, n, took, most)
	}
	var tat time.Time
	if err := bed.Store.DB().Get(&tat, "SELECT tat FROM rate_slots WHERE webhook_id = 7"); err != nil {
		t.Fatal(err)
	}
	// The first slot is at its reservation's now, after dbStart; each other interval later.
	if span := tat.Sub(dbStart); span < time.Duration(taken)*interval || span > time.Duration(taken)*interval+took {
		t.Errorf("next free slot %v after the start, want %d × %v (+ up to %v)", span, taken, interval, took)
	}
	t.Logf("%d slots taken of %d asked, in %v", taken, n, took)
}

// TestBreakerRows opens, probes and closes a breaker as two workers would: one opening and one
// closing call win, with their notices stored; the probe is claimed once per interval; a
// failed attempt recorded while it is open says so; a success resets the count.
func TestBreakerRows(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	id := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "A.B", URL: "http://x/"})
	for i := range 3 {
		rec, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: "d" + string(rune('0'+i)), EventID: "e", WebhookID: id,
			Attempt: 1, Status: repository.StatusPending, StatusCode: 500, StartedAt: time.Now(), CountAttempt: true})
		if err != nil {
			t.Fatal(err)
		}
		if rec.AttemptFailures != i+1 || rec.BreakerOpen {
			t.Errorf("attempt failure %d: recorded %+v, want %d in a row, breaker closed", i+1, rec, i+1)
		}
	}
	n := repository.Notice{RoutingKey: "webhook.circuit_opened", WebhookID: id, AccountID: 1, URL: "http://x/", Reason: "3 failed attempts in a row", At: time.Now()}
	opened := 0
	for range 2 {
		got, ok, err := bed.Store.OpenBreaker(ctx, n, time.Now().Add(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			opened++
			if got.ID == 0 {
				t.Error("opening call got no notice id")
			}
		}
	}
	if opened != 1 || bed.Count("SELECT COUNT(*) FROM breakers WHERE webhook_id=?", id) != 1 || bed.Count("SELECT attempt_failures FROM webhooks WHERE id=?", id) != 0 {
		t.Errorf("opened by %d calls, want 1, with one row and the count reset", opened)
	}
	rec, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: "d9", EventID: "e", WebhookID: id,
		Attempt: 1, Status: repository.StatusPending, StatusCode: 500, StartedAt: time.Now(), CountAttempt: true})
	if err != nil || !rec.BreakerOpen || rec.AttemptFailures != 1 {
		t.Errorf("failure while open: %+v, %v; want breaker open, 1 in a row", rec, err)
	}
	claims := 0
	for range 3 {
		ok, err := bed.Store.ClaimProbe(ctx, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			claims++
		}
	}
	if claims != 1 {
		t.Errorf("probe claimed %d times, want once per interval", claims)
	}
	if _, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: "d9", EventID: "e", WebhookID: id,
		Attempt: 2, Status: repository.StatusSucceeded, StatusCode: 200, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if f := bed.Count("SELECT attempt_failures FROM webhooks WHERE id=?", id); f != 0 {
		t.Errorf("attempt failures after a success = %d, want 0", f)
	}
	n.RoutingKey, n.Reason = "webhook.circuit_closed", "probe succeeded"
	closed := 0
	for range 2 {
		if _, ok, err := bed.Store.CloseBreaker(ctx, n); err != nil {
			t.Fatal(err)
		} else if ok {
			closed++
		}
	}
	pending, err := bed.Store.PendingNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if closed != 1 || len(pending) != 2 || pending[0].RoutingKey != "webhook.circuit_opened" || pending[1].RoutingKey != "webhook.circuit_closed" {
		t.Errorf("closed by %d calls, notices %+v; want 1, opened then closed", closed, pending)
	}
	for _, p := range pending {
		if err := bed.Store.NoticeSent(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := bed.Count("SELECT COUNT(*) FROM outbox"); n != 0 {
		t.Errorf("%d notices left after sending, want 0", n)
	}
}

// TestHeldRows: a held first attempt gets a pending row due when it comes back; holding it
// again moves only its due time; an attempt recorded since is not undone by a stale hold;
// releasing makes the held ones due now, oldest first.
func TestHeldRows(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	due := func(id string) (time.Time, string, int) {
		var r struct {
			Due      time.Time `db:"due_at"`
			Status   string    `db:"status"`
			Attempts int       `db:"attempts"`
		}
		if err := bed.Store.DB().Get(&r, "SELECT due_at, status, attempts FROM deliveries WHERE id=?", id); err != nil {
			t.Fatal(err)
		}
		return r.Due, r.Status, r.Attempts
	}
	at := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	hold := func(id string, attempts int, back time.Time) {
		t.Helper()
		if _, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: id, EventID: "e-" + id, WebhookID: 3, Attempt: attempts, Due: back, Held: true}); err != nil {
			t.Fatal(err)
		}
	}
	hold("a", 0, at)
	if d, st, n := due("a"); !d.Equal(at) || st != "pending" || n != 0 {
		t.Errorf("held first attempt: due %v %s attempts %d; want %v pending 0", d, st, n, at)
	}
	hold("a", 0, at.Add(time.Second))
	if d, _, _ := due("a"); !d.Equal(at.Add(time.Second)) {
		t.Errorf("held again: due %v, want %v", d, at.Add(time.Second))
	}
	if _, err := bed.Store.Record(ctx, repository.Outcome{DeliveryID: "a", EventID: "e-a", WebhookID: 3, Attempt: 1,
		Status: repository.StatusPending, StatusCode: 500, Error: "HTTP 500", StartedAt: time.Now(), Due: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	hold("a", 0, at) // a stale hold of the first attempt
	if d, st, n := due("a"); !d.Equal(at.Add(time.Hour)) || st != "pending" || n != 1 {
		t.Errorf("stale hold after attempt 1: due %v %s attempts %d; want %v pending 1", d, st, n, at.Add(time.Hour))
	}
	if got := bed.Count("SELECT COUNT(*) FROM deliveries WHERE id='a' AND last_error='HTTP 500'"); got != 1 {
		t.Error("a hold overwrote the last error")
	}
	hold("b", 0, at.Add(2*time.Minute))
	now := time.Now()
	ds, err := bed.Store.ReleaseHeld(ctx, 3, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != "a" || ds[1].ID != "b" || !ds[0].DueAt.Time.Equal(now.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("released %+v, want a then b, due now", ds)
	}
	if d, _, _ := due("b"); !d.Equal(now.UTC().Truncate(time.Microsecond)) {
		t.Errorf("released delivery due %v, want %v", d, now)
	}
	if ds, _ := bed.Store.ReleaseHeld(ctx, 3, now, 10); len(ds) != 0 {
		t.Errorf("released again: %d, want none", len(ds))
	}
}

// TestReservePhase: an idle webhook's first slot is a phase away; the next ones follow it an
// interval apart, whatever phase they ask for.
func TestReservePhase(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	const interval, phase = 100 * time.Millisecond, 40 * time.Millisecond
	first, err := bed.Store.Reserve(ctx, 9, interval, phase, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, err := bed.Store.Reserve(ctx, 9, interval, 5*time.Millisecond, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Taken || first.Wait != phase {
		t.Errorf("first reservation %+v, want taken %v away", first, phase)
	}
	// The second was asked a little later: its wait is a little less than phase + interval.
	if want := phase + interval; !second.Taken || second.Wait > want || second.Wait < want-50*time.Millisecond {
		t.Errorf("second reservation %+v, want taken about %v away", second, want)
	}
}
