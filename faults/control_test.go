//go:build faults

package faults

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// TestLedgerCatchesALoss is the negative control of the fault suite: the ledger that says
// nothing was lost in every other fault must say so when something was. A delivery row
// deleted after it succeeded, and a retry message purged while the repair sweep is far off,
// are each reported as a pair that never settled.
func TestLedgerCatchesALoss(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Attempt == 1 && strings.HasSuffix(h.EventID, "-retry") {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	ladder := retry.Ladder{time.Minute}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	for range 10 {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	l.Check(t, "control: nothing lost", 60*time.Second, Expect{})

	// A lost row.
	bed.Exec("DELETE FROM deliveries ORDER BY id LIMIT 1")
	_, problems := l.Verify(t, "control: a delivery row deleted", 3*time.Second, Expect{})
	if !mentions(problems, "got a 2xx but recorded \"\" (row false") {
		t.Errorf("ledger did not catch a deleted delivery row; it said %q", problems)
	}

	// A lost retry: the first attempt fails, its retry message is purged, and the repair sweep
	// is 15 minutes away.
	id := l.NextID() + "-retry"
	if err := l.Publish(id); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "both first attempts recorded pending", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id=? AND status='pending' AND attempts=1", id) == 2
	})
	if _, err := bed.Channel().QueuePurge(retry.QueueName(bed.Queue, time.Minute), false); err != nil {
		t.Fatalf("purge retry queue: %v", err)
	}
	_, problems = l.Verify(t, "control: a retry message purged", 3*time.Second, Expect{})
	if !mentions(problems, "event "+id+" webhook") {
		t.Errorf("ledger did not catch a lost retry; it said %q", problems)
	}
}

func mentions(problems []string, s string) bool {
	for _, p := range problems {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}
