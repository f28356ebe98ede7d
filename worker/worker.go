// Package worker wires one webhookd worker from its parts, as main does: the confirming
// publisher, the consumer of the work queue, the delivery handler behind it, the notification
// outbox, the repair sweep, the database watcher, and the watches of the queues' depths and the
// open breakers that feed the metrics. Each part lives in its own package; this one only starts
// them in order and stops them in the reverse.
package worker

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/delivery"
)

// Config is what a worker needs to know.
type Config struct {
	// AMQPURL is the broker. Required.
	AMQPURL string
	// Topology names the exchange and queues. Its Queue is required and its Ladder needs at
	// least one delay.
	Topology broker.Topology
	// Concurrency bounds attempts in flight. Required: at least 1.
	Concurrency int
	// Prefetch bounds unacknowledged messages. Defaults to 8 × Concurrency.
	Prefetch int
	// MaxEventBytes is the largest event body accepted. Defaults to 1 MiB.
	MaxEventBytes int
	// DisableAfter is the failed deliveries in a row that disable a webhook. Defaults to 0:
	// never.
	DisableAfter int
	// ShutdownTimeout bounds how long attempts in flight may finish on shutdown. Defaults to
	// 30s.
	ShutdownTimeout time.Duration
	// RepairAfter is how long overdue a pending delivery is re-driven by the repair sweep.
	// Defaults to 15m.
	RepairAfter time.Duration
	// Version goes into the User-Agent. Defaults to "dev".
	Version string
	// Name is the connection name shown by the broker. Defaults to "webhookd".
	Name string
	// TracerProvider makes the span of each message and of its steps. Defaults to none:
	// tracing off, which costs a step a context lookup.
	TracerProvider trace.TracerProvider
	// WatchEvery is how often the queues' depths and the open breakers are read for the
	// metrics. Defaults to 10s.
	WatchEvery time.Duration
	// BreakerAfter, BreakerProbe and BreakerHold are the circuit breaker's settings, and
	// OutageHosts and OutageWindow the outage detector's (contract §8), with the defaults of
	// delivery.Config: breaker and detector off.
	BreakerAfter int
	BreakerProbe time.Duration
	BreakerHold  time.Duration
	OutageHosts  int
	OutageWindow time.Duration
}

// Store is the repository as a worker uses it.
type Store interface {
	delivery.Store
	delivery.Overdue
	Pinger
	BreakerCounter
	OrderedFinder
}

// Worker is one running webhookd worker.
type Worker struct {
	pub      *broker.Publisher
	handler  *delivery.Handler
	consumer *consumer.Consumer
	// sequencer consumes the ordering queue (delivery.Sequencer), which binder binds to the
	// exchange while some webhook is ordered.
	sequencer *consumer.Consumer
	binder    *orderingBinder
	repair    *delivery.Repair
	db        *dbWatch
	queues    *queueWatch
	breakers  *breakerWatch

	// due consumes the due queue: held deliveries coming back, on time whatever waits in the
	// work queue.
	due *consumer.Consumer
}

// New makes a Worker; now is the delivery clock (time.Now if nil). It fails, naming the
// setting, if cfg is not valid.
func New(cfg Config, store Store, webhooks delivery.Subscriptions, send delivery.Sender, log *slog.Logger, now func() time.Time) (*Worker, error) {
	if cfg.Name == "" {
		cfg.Name = "webhookd"
	}
	if cfg.WatchEvery == 0 {
		cfg.WatchEvery = 10 * time.Second
	}
	if cfg.RepairAfter == 0 {
		cfg.RepairAfter = 15 * time.Minute
	}
	if cfg.Prefetch == 0 && cfg.Concurrency > 0 {
		cfg.Prefetch = 8 * cfg.Concurrency
	}
	w := &Worker{db: newDBWatch(store, log)}
	w.pub = broker.NewPublisher(cfg.AMQPURL, cfg.Name+" publisher", log)
	w.pub.OnConnect = cfg.Topology.Declare
	var err error
	w.handler, err = delivery.New(delivery.Config{
		Topology:      cfg.Topology,
		Concurrency:   cfg.Concurrency,
		MaxEventBytes: cfg.MaxEventBytes,
		DisableAfter:  cfg.DisableAfter,
		RepairAfter:   cfg.RepairAfter,
		Version:       cfg.Version,
		DBFailed:      w.db.failed,
		BreakerAfter:  cfg.BreakerAfter,
		BreakerProbe:  cfg.BreakerProbe,
		BreakerHold:   cfg.BreakerHold,
		OutageHosts:   cfg.OutageHosts,
		OutageWindow:  cfg.OutageWindow,
	}, store, webhooks, send, tracedPublisher(cfg.TracerProvider, w.pub), log, now)
	if err != nil {
		return nil, err
	}
	metricRepairAfter.Set(cfg.RepairAfter.Seconds())
	w.queues = newQueueWatch(w.pub, cfg.Topology, cfg.WatchEvery, log)
	w.breakers = newBreakerWatch(store, cfg.WatchEvery, log)
	w.repair = delivery.NewRepair(cfg.RepairAfter, cfg.Topology, store, w.pub, log, now)
	w.binder = newOrderingBinder(store, cfg.Topology, w.pub, cfg.WatchEvery, log)
	// The work queue's consumer binds the ordering queue before its first message, so that no
	// event published after a worker is ready misses the sequencer.
	declare := func(ch *amqp.Channel) error {
		if err := cfg.Topology.Declare(ch); err != nil {
			return err
		}
		return w.binder.apply(context.Background(), ch)
	}
	w.consumer, err = consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Queue:           cfg.Topology.Queue,
		DeadQueue:       cfg.Topology.DeadQueue(),
		Prefetch:        cfg.Prefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Name:            cfg.Name,
		Declare:         declare,
		Paused:          w.paused,
	}, tracedHandler(cfg.TracerProvider, cfg.Topology.Queue, w.handler), w.pub, log)
	if err != nil {
		return nil, err
	}
	// The sequencer waits for its turn with the broker: one worker's is active, the others'
	// stand by. Its batches are one transaction each, so it takes many messages at once.
	w.sequencer, err = consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Queue:           cfg.Topology.OrderingQueue(),
		DeadQueue:       cfg.Topology.DeadQueue(),
		Prefetch:        sequencerPrefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Name:            cfg.Name + " sequencer",
		Declare:         cfg.Topology.Declare,
		Paused:          w.db.down,
	}, w.handler.Sequencer(), w.pub, log)
	if err != nil {
		return nil, err
	}
	w.due, err = consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Queue:           cfg.Topology.DueQueue(),
		DeadQueue:       cfg.Topology.DeadQueue(),
		Prefetch:        duePrefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Name:            cfg.Name + " due",
		Declare:         cfg.Topology.Declare,
		Paused:          w.paused,
	}, tracedHandler(cfg.TracerProvider, cfg.Topology.DueQueue(), w.handler), w.pub, log)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// duePrefetch bounds the messages of held deliveries in hand; each carries up to a few
// hundred.
const duePrefetch = 64

// sequencerPrefetch bounds the sequencer's messages in hand: a batch is at most this many.
const sequencerPrefetch = 256

// Ready reports whether the worker is connected to the broker and the database and consuming,
// the broker does not block its publishes (an alarm), and it is not in its own network outage.
func (w *Worker) Ready() bool {
	return w.consumer.Consuming() && w.due.Consuming() && w.pub.Ready() && !w.pub.Blocked() && !w.db.down() && !w.handler.InOutage()
}

// paused is the consumer's pause: while the database is away, and while the worker is in its
// own network outage but for one message a second.
func (w *Worker) paused() bool { return w.db.down() || w.handler.Paused() }

// Publisher is the worker's confirming publisher.
func (w *Worker) Publisher() *broker.Publisher { return w.pub }

// Run works until ctx ends, then stops taking messages, lets attempts in flight finish for up
// to ShutdownTimeout, cancels the rest (their messages go back to the queue), and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	// The publisher outlives the consumer: attempts finishing after it stopped still park
	// their retries.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	defer w.handler.Close()
	var g errgroup.Group
	g.Go(func() error { return w.pub.Run(pubCtx) })
	g.Go(func() error { w.handler.RunOutbox(ctx); return nil })
	// The first delivery already knows the open breakers and pauses.
	w.handler.LoadGuards(ctx)
	g.Go(func() error { w.handler.RunGuards(ctx); return nil })
	g.Go(func() error { w.db.run(ctx); return nil })
	g.Go(func() error { w.repair.Run(ctx); return nil })
	g.Go(func() error { w.queues.run(ctx); return nil })
	g.Go(func() error { w.breakers.run(ctx); return nil })
	g.Go(func() error { return w.sequencer.Run(ctx) })
	g.Go(func() error { w.binder.run(ctx); return nil })
	dueDone := make(chan struct{})
	g.Go(func() error {
		defer close(dueDone)
		return w.due.Run(ctx)
	})
	g.Go(func() error {
		// Both consumers' deliveries in flight may still park retries and holds.
		defer func() { <-dueDone; stopPub() }()
		return w.consumer.Run(ctx)
	})
	return g.Wait()
}
