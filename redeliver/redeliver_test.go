package redeliver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

func publisher(t *testing.T, bed *testbed.Bed) *broker.Publisher {
	t.Helper()
	p := broker.NewPublisher(testbed.AMQPURL, bed.Name, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testbed.Eventually(t, 20*time.Second, "the publisher to connect", p.Ready)
	return p
}

// Each id becomes one redelivery message on the work queue, confirmed; a queue that does not
// exist returns them, which is ErrNotConfirmed.
func TestPublish(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	bed.DeclareTopology("quorum")
	p := publisher(t, bed)
	ids := []string{"a", "b", "c", "d", "e"}
	n, err := redeliver.Publish(context.Background(), p, bed.Queue, ids)
	if n != len(ids) || err != nil {
		t.Fatalf("Publish = %d, %v; want %d confirmed", n, err, len(ids))
	}
	got := map[string]bool{}
	for range ids {
		m := bed.Get(bed.Queue, 10*time.Second)
		id, err := broker.ParseRedelivery(m.Body)
		if err != nil || m.Type != broker.TypeRedeliver {
			t.Fatalf("message %q of type %q is not a redelivery", m.Body, m.Type)
		}
		got[id] = true
	}
	if len(got) != len(ids) {
		t.Errorf("redeliveries of %v, want each of %v once", got, ids)
	}
	n, err = redeliver.Publish(context.Background(), p, bed.Queue+".nowhere", []string{"x"})
	if n != 0 || !errors.Is(err, redeliver.ErrNotConfirmed) {
		t.Errorf("Publish to no queue = %d, %v; want 0 and ErrNotConfirmed", n, err)
	}
}

// A replay makes the pending rows of the events a webhook matches and has no delivery for,
// then publishes their redeliveries.
func TestReplay(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	bed.DeclareTopology("quorum")
	p := publisher(t, bed)
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "A.B", URL: "http://x/"})
	now := time.Now().UTC()
	for _, id := range []string{"e1", "e2"} {
		bed.Exec("INSERT INTO events (id, event, account_id, occurred_at, data, received_at) VALUES (?, 'A.B', 1, 'x', '{}', ?)", id, now)
	}
	bed.Exec("INSERT INTO events (id, event, account_id, occurred_at, data, received_at) VALUES ('other', 'A.B', 2, 'x', '{}', ?)", now)
	w, err := bed.Store.Webhook(context.Background(), hook)
	if err != nil {
		t.Fatal(err)
	}
	n, err := redeliver.Replay(context.Background(), bed.Store, p, bed.Queue, w, now.Add(-time.Minute), now.Add(time.Minute))
	if n != 2 || err != nil {
		t.Fatalf("Replay = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"e1", "e2"} {
		if c := bed.Count("SELECT COUNT(*) FROM deliveries WHERE id = ? AND status = 'pending' AND attempts = 0", repository.DeliveryID(id, hook)); c != 1 {
			t.Errorf("no pending delivery of %s", id)
		}
	}
	testbed.Eventually(t, 10*time.Second, "two redeliveries on the work queue", func() bool { return bed.QueueDepth(bed.Queue) == 2 })
}
