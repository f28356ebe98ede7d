// Package consumer takes messages off the work queue and owns their acknowledgement: it
// validates events, fans them out to their webhooks, attempts each delivery, and parks failed
// deliveries in the retry ladder or sends bad messages to the dead queue.
//
// One goroutine owns the consuming channel. Handlers run on their own goroutines, bounded by
// the prefetch, and hand their verdict back to the owner, which acks on the channel the
// message came from, or drops the verdict if that channel is gone (the broker has requeued
// the message already).
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/webhookd/webhookd/internal/batch"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/sender"
)

// Config is what the worker needs to know.
type Config struct {
	// AMQPURL is the broker.
	AMQPURL string
	// Topology names the exchange and queues.
	Topology Topology
	// Concurrency bounds attempts in flight.
	Concurrency int
	// Prefetch bounds unacknowledged messages.
	Prefetch int
	// MaxEventBytes is the largest event body accepted.
	MaxEventBytes int
	// DisableAfter is the failed deliveries in a row that disable a webhook; 0 never.
	DisableAfter int
	// ShutdownTimeout bounds how long attempts in flight may finish on shutdown.
	ShutdownTimeout time.Duration
	// Version goes into the User-Agent.
	Version string
	// Name is the connection name shown by the broker. Defaults to "webhookd".
	Name string
}

// Store is the storage the worker uses.
type Store interface {
	Claim(ctx context.Context, ev repository.Event) (bool, error)
	Record(ctx context.Context, o repository.Outcome) error
	GetEvent(ctx context.Context, id string) (repository.Event, error)
	GetDelivery(ctx context.Context, id string) (repository.Delivery, error)
	EventDeliveries(ctx context.Context, eventID string) ([]repository.Delivery, error)
	Webhook(ctx context.Context, id uint64) (repository.Webhook, error)
	Disable(ctx context.Context, id uint64, reason string) (bool, error)
	Failures(ctx context.Context, id uint64) (int, error)
	PendingNotifications(ctx context.Context) ([]repository.Notification, error)
	Notified(ctx context.Context, id uint64) error
	Ping(ctx context.Context) error
}

// Sender posts a delivery.
type Sender interface {
	Send(ctx context.Context, req sender.Request) (sender.Response, error)
}

// Worker consumes the work queue until its context ends.
type Worker struct {
	cfg      Config
	store    Store
	webhooks repository.WebhookSource
	send     Sender
	pub      *Publisher
	log      *slog.Logger
	now      func() time.Time

	slots     *semaphore.Weighted
	shares    *hookShares
	postponed *batch.Batcher[postponedDelivery]
	consuming atomic.Bool
	dbDown    atomic.Bool
	// handlers owns every handler goroutine, including those of a session that broke.
	handlers sync.WaitGroup
}

// New makes a Worker. webhooks is where subscriptions are looked up (a repository.Cache in
// production); now is the clock (time.Now if nil).
func New(cfg Config, store Store, webhooks repository.WebhookSource, send Sender, log *slog.Logger, now func() time.Time) *Worker {
	if now == nil {
		now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = "webhookd"
	}
	w := &Worker{
		cfg:      cfg,
		store:    store,
		webhooks: webhooks,
		send:     send,
		log:      log,
		now:      now,
		slots:    semaphore.NewWeighted(int64(cfg.Concurrency)),
		shares:   newHookShares(cfg.Concurrency, firstDelay(cfg.Topology.Ladder), now),
	}
	w.pub = NewPublisher(cfg.AMQPURL, cfg.Name+" publisher", log)
	w.pub.OnConnect = cfg.Topology.Declare
	return w
}

// Ready reports whether the worker is connected to the broker and the database and consuming.
func (w *Worker) Ready() bool {
	return w.consuming.Load() && w.pub.Ready() && !w.dbDown.Load()
}

// Publisher is the worker's confirming publisher, shared with commands that publish.
func (w *Worker) Publisher() *Publisher { return w.pub }

// Run consumes until ctx ends, then stops taking messages, lets attempts in flight finish for
// up to ShutdownTimeout, cancels the rest (their messages go back to the queue), and returns
// nil. Lost connections are re-established with backoff; Run never gives up on them.
func (w *Worker) Run(ctx context.Context) error {
	// work outlives ctx by the shutdown timeout so that attempts in flight can finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// The publisher outlives the consumer: attempts finishing after it stopped still park
	// their retries.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()

	w.postponed = batch.New(w.publishPostponed, batch.Options[postponedDelivery]{})
	defer w.postponed.Close()

	var g errgroup.Group
	g.Go(func() error { return w.pub.Run(pubCtx) })
	g.Go(func() error { w.notifyPending(ctx); return nil })
	g.Go(func() error { w.watchDB(ctx); return nil })
	g.Go(func() error {
		defer stopPub()
		bo := newBackoff()
		for {
			connected, err := w.session(ctx, work, cancelWork)
			if connected {
				bo.reset()
			}
			if ctx.Err() != nil {
				break
			}
			d := bo.next()
			w.log.Warn("consumer connection lost, reconnecting", "err", err, "in", d)
			if !sleepCtx(ctx, d) {
				break
			}
		}
		// Handlers of broken sessions may still run; they get the shutdown timeout too.
		idle := make(chan struct{})
		go func() { w.handlers.Wait(); close(idle) }()
		select {
		case <-idle:
		case <-time.After(w.cfg.ShutdownTimeout):
			cancelWork()
			<-idle
		}
		return nil
	})
	return g.Wait()
}

// verdict is how a handler wants its message settled.
type verdict int

const (
	ack verdict = iota
	requeue
)

type settle struct {
	tag     uint64
	verdict verdict
}

// session consumes on one connection until it breaks or ctx ends. It reports whether it got
// as far as consuming.
func (w *Worker) session(ctx, work context.Context, cancelWork context.CancelFunc) (bool, error) {
	conn, err := dial(w.cfg.AMQPURL, w.cfg.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel.open: %w", err)
	}
	if err := w.cfg.Topology.Declare(ch); err != nil {
		return false, err
	}
	if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("basic.qos: %w", err)
	}
	const tag = "webhookd"
	deliveries, err := ch.Consume(w.cfg.Topology.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("basic.consume %s: %w", w.cfg.Topology.Queue, err)
	}
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))

	settles := make(chan settle, w.cfg.Prefetch)
	done := make(chan struct{})
	defer close(done)
	// Handlers are kept for the session rather than started per message: a goroutine that
	// has made a POST has grown its stack, and the next message need not grow one again.
	pool := make(chan amqp.Delivery)
	inFlight := 0
	w.consuming.Store(true)
	defer w.consuming.Store(false)
	w.log.Info("consuming", "queue", w.cfg.Topology.Queue, "prefetch", w.cfg.Prefetch, "concurrency", w.cfg.Concurrency)

	var shutdown <-chan time.Time
	cancelled := false
	stopping := ctx.Done()
	dbPoll := time.NewTicker(250 * time.Millisecond)
	defer dbPoll.Stop()
	for {
		// While the database is away no new message is taken: it stays with the broker, or
		// in the prefetch buffer, unacknowledged.
		in := deliveries
		if w.dbDown.Load() || stopping == nil {
			in = nil
		}
		select {
		case d, ok := <-in:
			if !ok {
				return true, errors.New("deliveries channel closed")
			}
			inFlight++
			select {
			case pool <- d:
			default:
				// Every handler is busy: one more joins the pool, and stays for the session.
				w.handlers.Add(1)
				go func() {
					defer w.handlers.Done()
					for {
						v := w.handle(work, d)
						select {
						case settles <- settle{d.DeliveryTag, v}:
						case <-done:
							// The channel is gone; the broker has requeued the message.
							return
						}
						select {
						case d = <-pool:
						case <-done:
							return
						}
					}
				}()
			}
		case s := <-settles:
			inFlight--
			var err error
			if s.verdict == ack {
				err = ch.Ack(s.tag, false)
				metricMessages.WithLabelValues("ack").Inc()
			} else {
				err = ch.Nack(s.tag, false, true)
				metricMessages.WithLabelValues("requeue").Inc()
			}
			if err != nil {
				return true, fmt.Errorf("basic.ack: %w", err)
			}
			if stopping == nil && inFlight == 0 {
				return true, nil
			}
		case <-dbPoll.C:
			// Looks at dbDown again, which watchDB keeps up to date.
		case <-stopping:
			// Stop taking messages; settle those in flight.
			stopping = nil
			w.consuming.Store(false)
			if err := ch.Cancel(tag, false); err != nil {
				return true, fmt.Errorf("basic.cancel: %w", err)
			}
			if inFlight == 0 {
				return true, nil
			}
			w.log.Info("shutting down: waiting for attempts in flight", "messages", inFlight, "timeout", w.cfg.ShutdownTimeout)
			shutdown = time.After(w.cfg.ShutdownTimeout)
		case <-shutdown:
			if cancelled {
				// Cancelled attempts did not settle in time: closing the connection
				// requeues their messages.
				return true, nil
			}
			w.log.Warn("shutdown timeout: cancelling attempts in flight; their messages go back to the queue", "messages", inFlight)
			cancelWork()
			cancelled = true
			shutdown = time.After(5 * time.Second)
		case err := <-connClosed:
			return true, fmt.Errorf("connection closed: %v", err)
		case err := <-chClosed:
			return true, fmt.Errorf("channel closed: %v", err)
		}
	}
}

// dbFailed marks the database as away after an error that is not about a missing row.
func (w *Worker) dbFailed(err error) {
	if err == nil || errors.Is(err, repository.ErrNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	if !w.dbDown.Swap(true) {
		w.log.Error("database unavailable: pausing consumption", "err", err)
	}
}

// watchDB pings the database every second until ctx ends, so that /readyz and the
// consumer's pause follow the database even while no message arrives.
func (w *Worker) watchDB(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.store.Ping(pctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			w.dbFailed(err)
		case err == nil && w.dbDown.Swap(false):
			w.log.Info("database back: resuming consumption")
		}
	}
}
