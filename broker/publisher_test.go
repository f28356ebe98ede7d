package broker_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A channel the broker closes while confirms wait in the publisher's buffer ends the session,
// and the next session takes the next publish. The library closes a channel's returns before
// its confirms: a session that took a confirm and then drained the closed returns spun there
// for good, its connection gone and Ready still true, every Publish waiting out its context.
func TestPublisherReconnectsAfterChannelClosed(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	bed.DeclareTopology("classic")
	pub := broker.NewPublisher(testbed.AMQPURL, bed.Name+" publisher", quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- pub.Run(ctx) }()
	testbed.Eventually(t, 10*time.Second, "the publisher to connect", pub.Ready)

	publish := func(timeout time.Duration, p broker.Publishing) error {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return pub.Publish(pctx, p)
	}
	toQueue := broker.Publishing{Key: bed.Queue, Mandatory: true, Msg: amqp.Publishing{Body: []byte("x")}}
	const rounds = 30
	for round := range rounds {
		// Publishes from many callers keep the session busy, so that the broker's acks wait
		// in the confirms buffer; in their midst a publish to an exchange that does not
		// exist has the broker close the channel (404) behind those acks.
		var confirmed atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if publish(2*time.Second, toQueue) == nil {
						confirmed.Add(1)
					}
				}
			}()
		}
		testbed.Eventually(t, 10*time.Second, "publishes to be confirmed", func() bool { return confirmed.Load() >= 500 })
		if err := publish(2*time.Second, broker.Publishing{Exchange: bed.Name + ".missing", Key: "x"}); err == nil {
			t.Fatalf("round %d: publish to a missing exchange confirmed", round)
		}
		close(stop)
		wg.Wait()
		if err := publish(5*time.Second, toQueue); err != nil {
			t.Fatalf("round %d: publish after the broker closed the channel: %v", round, err)
		}
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v", err)
	}
}
