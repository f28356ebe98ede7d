package worker_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// gauge returns the value of the series of metric name with labels, and whether it exists.
func gauge(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestWatches runs a worker on the real services: its queues' depths, its work queue's
// consumers and the open breakers are exported, every series from the start, and follow what
// the broker and the database hold.
func TestWatches(t *testing.T) {
	bed := testbed.New(t)
	ladder := retry.Ladder{time.Minute, 5 * time.Minute, time.Minute}
	w := bed.StartWorker(testbed.WorkerOptions{Ladder: ladder, WatchEvery: 50 * time.Millisecond})
	dead := bed.Queue + ".dead"
	for _, q := range []struct{ name, kind string }{
		{bed.Queue, "work"}, {retry.QueueName(bed.Queue, time.Minute), "retry"},
		{retry.QueueName(bed.Queue, 5*time.Minute), "retry"}, {dead, "dead"},
	} {
		if _, ok := gauge(t, "webhookd_queue_messages", map[string]string{"queue": q.name, "kind": q.kind}); !ok {
			t.Errorf("no webhookd_queue_messages series for %s (%s)", q.name, q.kind)
		}
	}

	for range 3 {
		bed.Publish("", dead, amqp.Publishing{Body: []byte("x")})
	}
	// Parked for a minute: the worker does not take it back before the test ends.
	bed.Publish("", retry.QueueName(bed.Queue, time.Minute), amqp.Publishing{Body: []byte("x")})
	bed.Exec("INSERT INTO breakers (webhook_id, opened_at, probe_at) VALUES (1, NOW(6), NOW(6)), (2, NOW(6), NOW(6))")
	testbed.Eventually(t, 10*time.Second, "the depths, the consumer and the breakers read", func() bool {
		d, _ := gauge(t, "webhookd_queue_messages", map[string]string{"queue": dead})
		r, _ := gauge(t, "webhookd_queue_messages", map[string]string{"queue": retry.QueueName(bed.Queue, time.Minute)})
		c, _ := gauge(t, "webhookd_queue_consumers", map[string]string{"queue": bed.Queue})
		b, _ := gauge(t, "webhookd_breakers_open", nil)
		return d == 3 && r == 1 && c == 1 && b == 2
	})

	// A queue deleted under the worker (its channel is closed by the 404) does not stop the
	// others from being read.
	if _, err := bed.Channel().QueueDelete(retry.QueueName(bed.Queue, 5*time.Minute), false, false, false); err != nil {
		t.Fatal(err)
	}
	bed.Publish("", dead, amqp.Publishing{Body: []byte("x")})
	testbed.Eventually(t, 10*time.Second, "the dead queue read after a missing queue", func() bool {
		d, _ := gauge(t, "webhookd_queue_messages", map[string]string{"queue": dead})
		return d == 4
	})
	if err := w.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
