//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// TestOrderedThroughKillsAndClosedConnections delivers an ordered webhook's events for many
// objects, some first attempts failing, through two workers while one is killed with SIGKILL
// mid-stream and started again, and then every worker connection to the broker is closed: per
// object every event must succeed in publish order with sequence 1, 2, 3…, none started before
// the one ahead of it succeeded, and duplicates stay bounded.
func TestOrderedThroughKillsAndClosedConnections(t *testing.T) {
	bed := testbed.New(t)
	rc := testbed.NewOrderedReceiver(t, func(i int) bool { return i%5 == 2 })
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.UPDATED", URL: rc.URL + "/ordered"})
	bed.Exec("UPDATE webhooks SET ordered = 1 WHERE id = ?", hook)
	// A repair sweep within seconds: a worker killed between placing a delivery (or settling
	// the one before it) and starting it leaves the start to the sweep.
	opts := ProcOptions{Ladder: retry.Ladder{300 * time.Millisecond, 600 * time.Millisecond}, RepairAfter: 3 * time.Second}
	procs := []*Proc{StartProc(t, bed, opts), StartProc(t, bed, opts)}
	guardServers(t)

	const objects, perObject = 20, 30
	total := objects * perObject
	published := make(chan struct{})
	go func() {
		defer close(published)
		// A paced stream, so that the faults fall mid-way.
		pace := time.NewTicker(300 * time.Millisecond)
		defer pace.Stop()
		for i := range perObject {
			<-pace.C
			for o := range objects {
				obj := fmt.Sprintf("o%d", o)
				bed.PublishEvent("TASK.UPDATED", testbed.Event(testbed.OrderedEventID(obj, i), "TASK.UPDATED", 1, `"objectId":"`+obj+`"`))
			}
		}
	}()

	testbed.Eventually(t, time.Minute, "a third of the events delivered", func() bool { return rc.Succeeded() >= total/3 })
	// The first worker started first and so holds the ordering queue's single active consumer.
	procs[0].Kill()
	t.Logf("killed a worker with SIGKILL after %d deliveries", rc.Succeeded())
	procs[0] = StartProc(t, bed, opts)

	testbed.Eventually(t, time.Minute, "half of the events delivered", func() bool { return rc.Succeeded() >= total/2 })
	t.Logf("closing every worker connection after %d deliveries", rc.Succeeded())
	port := brokerPort(t)
	for _, p := range procs {
		conns, err := connsOfProcess(p.PID(), port)
		if err != nil {
			t.Fatal(err)
		}
		closeConns(t, conns)
	}
	t.Logf("closed them; %d deliveries by then", rc.Succeeded())

	<-published
	testbed.Eventually(t, 2*time.Minute, "every ordered event delivered", func() bool { return rc.Succeeded() == total })
	testbed.Eventually(t, time.Minute, "every delivery's row to say succeeded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'") == 0
	})
	duplicates, most := rc.Check(t, objects, perObject)
	t.Logf("%d events, %d delivered in order, %d duplicates, at most %d requests at once", total, rc.Succeeded(), duplicates, most)
	if bound := total / 20; duplicates > bound {
		t.Errorf("%d duplicate requests, want at most %d (5 %%)", duplicates, bound)
	}
	if n := bed.QueueDepth(bed.Queue + ".dead"); n != 0 {
		t.Errorf("dead queue holds %d messages, want none", n)
	}
}
