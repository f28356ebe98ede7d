//go:build faults

package faults

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// TestMemoryAlarm raises RabbitMQ's memory alarm while deliveries climb the retry ladder: the
// broker blocks every connection that publishes, the worker's publisher included. Retries
// coming back meanwhile are attempted, fail again, and cannot park their next retry: the
// handler waits PublishTimeout for the confirm, gives up, and its message goes back to the
// queue. The alarm holds until that has happened. Nothing may be lost or dead-lettered
// meanwhile, the worker must not exit, and once the alarm clears every delivery succeeds.
func TestMemoryAlarm(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	// Attempts 1 and 2 fail, so that every delivery parks a retry twice; attempt 3 succeeds.
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Attempt < 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	const events = 40
	for range events {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	// Started on a full queue, so that the first retries are parked together; the first
	// wait is long enough for the alarm to be on before they come back.
	ladder := retry.Ladder{6 * time.Second, 2 * time.Second}
	p := StartProc(t, bed, ProcOptions{Ladder: ladder})
	pairs := events * len(l.Hooks)
	testbed.Eventually(t, 30*time.Second, "every first attempt failed and its retry parked", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='pending' AND attempts=1") == pairs
	})
	requeue := func() float64 { return p.Metric(`webhookd_messages_total{result="requeue"}`) }
	requeuedBefore := requeue()

	clear := memoryAlarm(t, time.Minute)
	raised := time.Now()
	if n := attemptsMade(l, 2); n > 0 {
		t.Fatalf("%d second attempts made before the alarm was on: the test needs a longer first delay", n)
	}
	// The alarm holds until a retry has waited out PublishTimeout and its message gone back,
	// and at least that long; meanwhile nothing may fail, be dead-lettered, or exit. (The
	// broker blocks a connection at its first publish after the alarm, and takes that one.)
	// The broker tells the publisher's connection it is blocked: /readyz answers 503 until the
	// alarm is lifted.
	var ready []int
	held := func() bool {
		if p.Exited() {
			t.Fatalf("worker exited %v into the memory alarm", time.Since(raised).Round(time.Millisecond))
		}
		if n := bed.QueueDepth(bed.Queue + ".dead"); n > 0 {
			t.Fatalf("%d messages dead-lettered %v into the memory alarm", n, time.Since(raised).Round(time.Millisecond))
		}
		if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'"); n > 0 {
			t.Fatalf("%d deliveries failed %v into the memory alarm", n, time.Since(raised).Round(time.Millisecond))
		}
		if s := p.Ready(); len(ready) == 0 || ready[len(ready)-1] != s {
			ready = append(ready, s)
		}
		return time.Since(raised) > broker.PublishTimeout && requeue() > requeuedBefore
	}
	if !poll(40*time.Second, 250*time.Millisecond, held) {
		t.Fatalf("no message requeued within 40s of the alarm: no retry waited out PublishTimeout (%d second attempts made)", attemptsMade(l, 2))
	}
	second := attemptsMade(l, 2)
	clear()
	t.Logf("memory alarm held %v: second attempts of %d of %d deliveries made meanwhile, /readyz answered %v",
		time.Since(raised).Round(100*time.Millisecond), second, pairs, ready)

	// A retry given up on was taken by the broker all the same once the alarm cleared: it
	// comes back beside the one parked again, and the two are one delivery's attempt 3. Each
	// may give one duplicate, when the two are not in flight at once in the worker.
	tally, problems := l.Verify(t, "memory alarm", 90*time.Second, Expect{DuplicatePercent: 100})
	for _, p := range problems {
		t.Errorf("FAULT memory alarm: %s", p)
	}
	givenUp := int(requeue() - requeuedBefore)
	t.Logf("%d retries given up on and requeued, %d duplicates", givenUp, tally.Duplicates)
	if tally.Duplicates > givenUp {
		t.Errorf("duplicates = %d, want at most one for each of the %d retries given up on", tally.Duplicates, givenUp)
	}
	if !slices.Contains(ready, http.StatusServiceUnavailable) {
		t.Errorf("/readyz answered %v during the alarm, want 503 while the broker blocked the worker", ready)
	}
	if p.Exited() {
		t.Errorf("worker exited")
	}
	if s := p.Ready(); s != http.StatusOK {
		t.Errorf("/readyz = %d after the alarm cleared, want 200", s)
	}
}

// attemptsMade counts the distinct deliveries the receiver got attempt n of.
func attemptsMade(l *Ledger, n int) int {
	seen := map[string]bool{}
	for _, h := range l.Hits() {
		if h.Attempt == n {
			seen[h.DeliveryID] = true
		}
	}
	return len(seen)
}

// memoryAlarm raises RabbitMQ's memory alarm, as a node short of memory would, by setting its
// high watermark to one byte, and waits until the node reports the alarm. It returns clear,
// which puts the node's own setting back and waits until the alarm is gone. The broker is
// shared by every test on the machine and blocks all of their publishers meanwhile, so the
// setting is also put back when t ends, and after limit whatever the test is doing.
func memoryAlarm(t *testing.T, limit time.Duration) (clear func()) {
	t.Helper()
	out, err := rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
	if err != nil {
		t.Fatalf("read the memory high watermark: %v", err)
	}
	// "0.4", or "{absolute,1073741824}" for a setting in bytes.
	original := []string{strings.TrimSpace(out)}
	if v, ok := strings.CutPrefix(original[0], "{absolute,"); ok {
		original = []string{"absolute", strings.TrimSuffix(v, "}")}
		if original[1] == "1" {
			// Left behind by a run killed before it could put the setting back.
			original = []string{"0.4"}
		}
	}
	var once sync.Once
	clear = func() {
		once.Do(func() {
			if _, err := rabbitmqctl(append([]string{"set_vm_memory_high_watermark"}, original...)...); err != nil {
				t.Errorf("restore the memory high watermark %v: %v", original, err)
				return
			}
			if !poll(30*time.Second, 100*time.Millisecond, func() bool { return !memoryAlarmOn() }) {
				t.Errorf("memory alarm still on 30s after the high watermark was put back to %v", original)
			}
		})
	}
	watchdog := time.AfterFunc(limit, clear)
	t.Cleanup(func() {
		watchdog.Stop()
		clear()
	})
	if _, err := rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1"); err != nil {
		t.Fatalf("raise the memory alarm: %v", err)
	}
	if !poll(30*time.Second, 100*time.Millisecond, memoryAlarmOn) {
		t.Fatalf("no memory alarm 30s after the high watermark was set to 1 byte")
	}
	t.Logf("memory alarm raised (high watermark was %s)", strings.Join(original, " "))
	return clear
}

// memoryAlarmOn reports whether the node has its memory alarm set.
func memoryAlarmOn() bool {
	out, err := rabbitmqctl("eval", "rabbit_alarm:get_alarms().")
	return err == nil && strings.Contains(out, "memory")
}
