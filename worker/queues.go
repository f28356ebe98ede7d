package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
)

// ChannelOpener opens a channel for its caller to own (the publisher's Channel).
type ChannelOpener interface {
	Channel() (*amqp.Channel, error)
}

// queueWatch reads how many messages wait in each of the worker's queues, and how many
// consumers the work queue has, with a passive declare every interval, and exports them as
// webhookd_queue_messages and webhookd_queue_consumers. It needs neither the management
// plugin nor a connection of its own: its channel is on the publisher's connection, opened
// again after a reconnect or after a queue that does not exist (yet) closed it.
type queueWatch struct {
	queues  []broker.Queue
	every   time.Duration
	log     *slog.Logger
	inspect *broker.Inspector
	// failing is whether the last read failed, so that a broker away is logged once.
	failing bool
}

// newQueueWatch makes the watch of topology's queues. Their series are created at once, so
// that /metrics has them before the first read.
func newQueueWatch(open ChannelOpener, topology broker.Topology, every time.Duration, log *slog.Logger) *queueWatch {
	w := &queueWatch{queues: topology.Queues(), every: every, log: log, inspect: broker.NewInspector(open.Channel)}
	for _, q := range w.queues {
		metricQueueMessages.WithLabelValues(q.Name, q.Kind)
	}
	metricQueueConsumers.WithLabelValues(topology.Queue)
	return w
}

// queueRetry is how soon a read that failed is tried again, when that is sooner than the
// interval: at start the publisher has not connected yet.
const queueRetry = time.Second

// run reads the queues at once and every interval until ctx ends.
func (w *queueWatch) run(ctx context.Context) {
	defer w.inspect.Close()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			// Both were ready: stopping wins, before the publisher's connection goes.
			return
		}
		err := w.read()
		switch {
		case err != nil && !w.failing && !errors.Is(err, broker.ErrNotConnected):
			w.failing = true
			w.log.Warn("queue depths not read", "err", err)
		case err == nil && w.failing:
			w.failing = false
			w.log.Info("queue depths read again")
		}
		next := w.every
		if err != nil {
			next = min(next, queueRetry)
		}
		t.Reset(next)
	}
}

// read reads every queue once and returns the first error. A queue that cannot be read keeps
// the value it was last read at.
func (w *queueWatch) read() error {
	var first error
	for _, q := range w.queues {
		st, err := w.inspect.Inspect(q.Name)
		if errors.Is(err, broker.ErrNotConnected) {
			return err
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		metricQueueMessages.WithLabelValues(q.Name, q.Kind).Set(float64(st.Messages))
		if q.Kind == broker.KindWork {
			metricQueueConsumers.WithLabelValues(q.Name).Set(float64(st.Consumers))
		}
	}
	return first
}
