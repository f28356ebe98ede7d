package consumer_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/internal/testbed"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	base := consumer.Config{AMQPURL: "amqp://x", Queue: "q"}
	tests := []struct {
		name    string
		change  func(*consumer.Config)
		wantErr string
	}{
		{"defaults", func(*consumer.Config) {}, ""},
		{"no url", func(c *consumer.Config) { c.AMQPURL = "" }, "AMQPURL"},
		{"no queue", func(c *consumer.Config) { c.Queue = "" }, "Queue"},
		{"negative prefetch", func(c *consumer.Config) { c.Prefetch = -1 }, "Prefetch"},
		{"negative requeues", func(c *consumer.Config) { c.MaxRequeues = -1 }, "MaxRequeues"},
		{"negative shutdown", func(c *consumer.Config) { c.ShutdownTimeout = -time.Second }, "ShutdownTimeout"},
	}
	for _, tt := range tests {
		cfg := base
		tt.change(&cfg)
		_, err := consumer.New(cfg, consumer.HandlerFunc(func(context.Context, amqp.Delivery) error { return nil }), nil, quiet)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: New = %v, want no error", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: New = %v, want an error naming %s", tt.name, err, tt.wantErr)
		}
	}
	d := base.WithDefaults()
	if d.Prefetch != 16 || d.DeadQueue != "q.dead" || d.ShutdownTimeout != 30*time.Second || d.MaxRequeues != 10 || d.Name != "webhookd" {
		t.Errorf("WithDefaults = %+v", d)
	}
}

// A message its handler keeps failing is put back more often than a quorum queue's delivery
// limit would allow (RabbitMQ 4 gives 20), and is still processed once the handler succeeds;
// a panic requeues like an error; a rejection dead-letters with the reason.
func TestRequeuesOutlastTheDeliveryLimit(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	bed.DeclareTopology("quorum")
	// The queue consumed drops a message delivered 20 times, as RabbitMQ 4's quorum queues do
	// by default.
	queue := bed.Queue + ".limited"
	bed.TrackQueue(queue)
	if _, err := bed.Channel().QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": 20}); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	pub := broker.NewPublisher(testbed.AMQPURL, bed.Name+" publisher", quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)

	const failures = 25
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan string, 4)
	h := consumer.HandlerFunc(func(_ context.Context, d amqp.Delivery) error {
		id := string(d.Body)
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		switch {
		case id == "reject":
			return consumer.Rejectf("cannot be processed")
		case id == "panic" && n == 1:
			panic("handler bug")
		case id == "flaky" && n <= failures:
			return io.ErrUnexpectedEOF
		}
		done <- id
		return nil
	})
	c, err := consumer.New(consumer.Config{
		AMQPURL: testbed.AMQPURL, Queue: queue, DeadQueue: bed.Queue + ".dead", Prefetch: 4, Name: bed.Name,
		RequeuePause: time.Millisecond, ShutdownTimeout: 5 * time.Second,
	}, h, pub, quiet)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	for _, id := range []string{"flaky", "panic", "reject"} {
		bed.Publish("", queue, amqp.Publishing{Body: []byte(id), DeliveryMode: amqp.Persistent})
	}
	got := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case id := <-done:
			got[id] = true
		case <-timeout:
			t.Fatalf("processed %v, want flaky and panic", got)
		}
	}
	mu.Lock()
	if seen["flaky"] != failures+1 {
		t.Errorf("flaky handled %d times, want %d", seen["flaky"], failures+1)
	}
	mu.Unlock()
	dead := bed.Get(bed.Queue+".dead", 10*time.Second)
	if string(dead.Body) != "reject" || dead.Headers[broker.HeaderError] != "cannot be processed" {
		t.Errorf("dead message %q with reason %v, want reject with its reason", dead.Body, dead.Headers[broker.HeaderError])
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
}
