// Package worker wires one webhookd worker from its parts, as main does: the confirming
// publisher, the consumer of the work queue, the delivery handler behind it, the notification
// outbox, the repair sweep and the database watcher. Each part lives in its own package; this one only starts
// them in order and stops them in the reverse.
package worker

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

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
}

// Store is the repository as a worker uses it.
type Store interface {
	delivery.Store
	delivery.Overdue
	Pinger
}

// Worker is one running webhookd worker.
type Worker struct {
	pub      *broker.Publisher
	handler  *delivery.Handler
	consumer *consumer.Consumer
	repair   *delivery.Repair
	db       *dbWatch
}

// New makes a Worker; now is the delivery clock (time.Now if nil). It fails, naming the
// setting, if cfg is not valid.
func New(cfg Config, store Store, webhooks delivery.Subscriptions, send delivery.Sender, log *slog.Logger, now func() time.Time) (*Worker, error) {
	if cfg.Name == "" {
		cfg.Name = "webhookd"
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
	}, store, webhooks, send, w.pub, log, now)
	if err != nil {
		return nil, err
	}
	w.repair = delivery.NewRepair(cfg.RepairAfter, cfg.Topology, store, w.pub, log, now)
	w.consumer, err = consumer.New(consumer.Config{
		AMQPURL:         cfg.AMQPURL,
		Queue:           cfg.Topology.Queue,
		DeadQueue:       cfg.Topology.DeadQueue(),
		Prefetch:        cfg.Prefetch,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Name:            cfg.Name,
		Declare:         cfg.Topology.Declare,
		Paused:          w.db.down,
	}, w.handler, w.pub, log)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Ready reports whether the worker is connected to the broker and the database and consuming.
func (w *Worker) Ready() bool {
	return w.consumer.Consuming() && w.pub.Ready() && !w.db.down()
}

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
	g.Go(func() error { w.db.run(ctx); return nil })
	g.Go(func() error { w.repair.Run(ctx); return nil })
	g.Go(func() error {
		defer stopPub()
		return w.consumer.Run(ctx)
	})
	return g.Wait()
}
