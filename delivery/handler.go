// Package delivery handles the messages of the work queue: it validates an event, fans it out
// to the webhooks subscribed to it, and makes each attempt (render → sign → send) within the
// limiter's fair shares, postponing deliveries of slow webhooks. What happens after an attempt
// is retry.Decide's answer; delivery carries it out: it parks the retry, records the outcome,
// disables the webhook and announces it. It never acks: the consumer settles the message from
// the error Handle returns.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/semaphore"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/batch"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/sender"
)

// Config is what the delivery logic needs to know.
type Config struct {
	// Topology names the queues retries and postponements go to. Its Ladder must have at
	// least one delay.
	Topology broker.Topology
	// Concurrency bounds attempts in flight. Required: at least 1.
	Concurrency int
	// MaxEventBytes is the largest event body accepted. Defaults to 1 MiB.
	MaxEventBytes int
	// DisableAfter is the failed deliveries in a row that disable a webhook. Defaults to 0:
	// never.
	DisableAfter int
	// RepairAfter is how long overdue a pending delivery is re-driven by the repair sweep, and
	// how long a retry waits for its delivery's row. Defaults to 15m.
	RepairAfter time.Duration
	// Version goes into the User-Agent. Defaults to "dev".
	Version string
	// DBFailed, if set, is told of each error of the database itself that the handler meets,
	// so that intake can pause. Defaults to none.
	DBFailed func(error)
	// BreakerAfter is the failed attempts in a row, of every worker together, that open a
	// webhook's circuit breaker. Defaults to 0: never.
	BreakerAfter int
	// BreakerProbe is how often an open breaker lets one attempt through. Defaults to 30s.
	BreakerProbe time.Duration
	// BreakerHold is how long a delivery waits behind an open breaker before it fails, and
	// how long a breaker stays open before its webhook is disabled. Defaults to 24h.
	BreakerHold time.Duration
	// OutageHosts is how many distinct hosts must fail at the connection level, with no
	// destination answering for OutageWindow, for the worker to take it as its own network
	// outage. Defaults to 0: never.
	OutageHosts int
	// OutageWindow: see OutageHosts. Defaults to 10s.
	OutageWindow time.Duration
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = 1 << 20
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.RepairAfter == 0 {
		c.RepairAfter = 15 * time.Minute
	}
	if c.DBFailed == nil {
		c.DBFailed = func(error) {}
	}
	if c.BreakerProbe == 0 {
		c.BreakerProbe = 30 * time.Second
	}
	if c.BreakerHold == 0 {
		c.BreakerHold = 24 * time.Hour
	}
	if c.OutageWindow == 0 {
		c.OutageWindow = 10 * time.Second
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("delivery: Concurrency must be at least 1, not %d", c.Concurrency)
	case c.MaxEventBytes < 1:
		return fmt.Errorf("delivery: MaxEventBytes must be at least 1, not %d", c.MaxEventBytes)
	case c.DisableAfter < 0:
		return fmt.Errorf("delivery: DisableAfter must not be negative, not %d", c.DisableAfter)
	case c.RepairAfter < 0:
		return fmt.Errorf("delivery: RepairAfter must not be negative, not %s", c.RepairAfter)
	case c.BreakerAfter < 0 || c.BreakerProbe < 0 || c.BreakerHold < 0:
		return fmt.Errorf("delivery: BreakerAfter, BreakerProbe and BreakerHold must not be negative")
	case c.OutageHosts < 0 || c.OutageWindow < 0:
		return fmt.Errorf("delivery: OutageHosts and OutageWindow must not be negative")
	case len(c.Topology.Ladder) == 0:
		return errors.New("delivery: Topology.Ladder needs at least one delay")
	case c.Topology.Queue == "":
		return errors.New("delivery: Topology.Queue is required")
	}
	return nil
}

// Ledger is the part of the delivery log an event's first attempts write.
type Ledger interface {
	// Claim stores ev and reports whether it is new.
	Claim(ctx context.Context, ev repository.Event) (bool, error)
	// Record makes an attempt's outcome durable and says what the disable decision needs.
	Record(ctx context.Context, o repository.Outcome) (repository.Recorded, error)
}

// Lookup reads what a retry, a postponed delivery or a redelivery needs.
type Lookup interface {
	GetEvent(ctx context.Context, id string) (repository.Event, error)
	GetDelivery(ctx context.Context, id string) (repository.Delivery, error)
	EventDeliveries(ctx context.Context, eventID string) ([]repository.Delivery, error)
}

// Webhooks reads and disables one webhook.
type Webhooks interface {
	Webhook(ctx context.Context, id uint64) (repository.Webhook, error)
	// Disable turns the webhook off and reports whether it was on.
	Disable(ctx context.Context, id uint64, reason string) (bool, error)
}

// Outbox holds the notifications whose publish has not been confirmed.
type Outbox interface {
	PendingNotifications(ctx context.Context) ([]repository.Notification, error)
	Notified(ctx context.Context, id uint64) error
}

// Store is the repository as the delivery logic uses it.
type Store interface {
	Ledger
	Lookup
	Webhooks
	Outbox
	// What protects the receivers (admit.go, breaker.go, guards.go), and the rows of held
	// deliveries coming back, read many at once (hold.go).
	RateLimits
	Breakers
	Notices
	Guards
	Batches
	// Per-object ordering (ordered.go).
	Ordering
}

// Subscriptions finds the webhooks an event goes to (a repository.Cache in production).
type Subscriptions interface {
	Webhooks(ctx context.Context, accountID uint64, event string) ([]repository.Webhook, error)
	// Invalidate forgets what is known of accountID's webhooks for event.
	Invalidate(accountID uint64, event string)
}

// Sender posts one attempt.
type Sender interface {
	Send(ctx context.Context, req sender.Request) (sender.Response, error)
}

// Publisher publishes with a confirm.
type Publisher interface {
	Publish(ctx context.Context, p broker.Publishing) error
}

// Handler handles the messages of the work queue. It is a consumer.Handler.
type Handler struct {
	cfg      Config
	store    Store
	webhooks Subscriptions
	send     Sender
	pub      Publisher
	log      *slog.Logger
	now      func() time.Time

	slots     *semaphore.Weighted
	shares    *limiter
	inflight  inflight
	postponed *batch.Batcher[broker.Postponed]

	// What protects the receivers: the admission policy's settings, what is known of the
	// pauses and breakers, the outage detector, the hold queues' batchers, and the breakers
	// closed here whose held deliveries are to be released.
	policy   policy
	guards   guards
	streaks  streaks
	outage   *outage
	holds    map[time.Duration]*batch.Batcher[broker.Postponed]
	releases chan uint64
}

// New makes a Handler of cfg, its defaults filled; now is the clock (time.Now if nil). It fails
// if cfg is not valid. Close releases it.
func New(cfg Config, store Store, webhooks Subscriptions, send Sender, pub Publisher, log *slog.Logger, now func() time.Time) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	hd := &Handler{
		cfg:      cfg,
		store:    store,
		webhooks: webhooks,
		send:     send,
		pub:      pub,
		log:      log,
		now:      now,
		slots:    semaphore.NewWeighted(int64(cfg.Concurrency)),
		shares:   newLimiter(cfg.Concurrency, firstDelay(cfg.Topology.Ladder), now),
	}
	hd.postponed = batch.New(hd.publishPostponed, batch.Options[broker.Postponed]{})
	hd.policy = policy{probe: cfg.BreakerProbe, hold: cfg.BreakerHold}
	hd.outage = newOutage(cfg.OutageHosts, cfg.OutageWindow, now)
	hd.holds = hd.newHolds()
	hd.releases = make(chan uint64, 64)
	initLadderMetrics(cfg.Topology.Ladder)
	return hd, nil
}

// Close flushes the postponements and holds waiting for company.
func (hd *Handler) Close() {
	hd.postponed.Close()
	for _, b := range hd.holds {
		b.Close()
	}
}

// InOutage reports whether the worker takes its failures for its own network outage
// (outage.go): while it does, /readyz says 503.
func (hd *Handler) InOutage() bool { return hd.outage.In() }

// Paused is the consumer's pause for the worker's own outage: true while in one, but for one
// message a second, which finds out whether destinations answer again.
func (hd *Handler) Paused() bool { return hd.outage.Paused() }

// Handle processes one message of the work queue. A nil error means every delivery it carried
// has a durable outcome, or has been parked or postponed: the message may be acked.
func (hd *Handler) Handle(ctx context.Context, d amqp.Delivery) error {
	var err error
	switch d.Type {
	case broker.TypeRetry:
		err = hd.handleRetry(ctx, d)
	case broker.TypeRedeliver:
		err = hd.handleRedeliver(ctx, d)
	case broker.TypePostponed:
		err = hd.handlePostponed(ctx, d)
	default:
		err = hd.handleEvent(ctx, d)
	}
	if errors.Is(err, repository.ErrUnavailable) {
		hd.cfg.DBFailed(err)
	}
	return err
}
