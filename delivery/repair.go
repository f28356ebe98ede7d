package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
)

// repairBatch is how many overdue deliveries one claim takes.
const repairBatch = 500

// Overdue finds and claims the pending deliveries whose next attempt is long overdue.
type Overdue interface {
	// ClaimOverdue takes up to limit deliveries due before overdue and moves their due time to
	// until, so that no other sweep takes them.
	ClaimOverdue(ctx context.Context, overdue, until time.Time, limit int) ([]repository.Delivery, error)
	// OldestDue is the due time of the pending delivery due first.
	OldestDue(ctx context.Context) (time.Time, bool, error)
}

// Repair is the repair sweep: the delivery log, not the broker, is the ledger. Every pending
// delivery has a due time; one that is RepairAfter overdue has lost its retry message (a
// purged or deleted queue, a broker that lost data, a message never settled) and is re-driven
// with a retry message on the work queue. Claims move the due time on by RepairAfter, so
// workers sweeping together re-drive each delivery once, and a re-drive that is lost again is
// repaired again.
type Repair struct {
	after time.Duration
	queue string
	steps int
	store Overdue
	pub   Publisher
	log   *slog.Logger
	now   func() time.Time
}

// NewRepair makes the repair sweep of the deliveries of topology's queue; now is the clock
// (time.Now if nil). after must be positive.
func NewRepair(after time.Duration, topology broker.Topology, store Overdue, pub Publisher, log *slog.Logger, now func() time.Time) *Repair {
	if now == nil {
		now = time.Now
	}
	return &Repair{after: after, queue: topology.Queue, steps: len(topology.Ladder), store: store, pub: pub, log: log, now: now}
}

// Run sweeps every third of RepairAfter until ctx ends.
func (r *Repair) Run(ctx context.Context) {
	t := time.NewTicker(max(r.after/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("repair sweep failed", "err", err, "repaired", n)
		}
	}
}

// Sweep re-drives every delivery RepairAfter overdue now, in batches, and returns how many.
func (r *Repair) Sweep(ctx context.Context) (int, error) {
	n := 0
	for {
		now := r.now()
		ds, err := r.store.ClaimOverdue(ctx, now.Add(-r.after), now.Add(r.after), repairBatch)
		if err != nil {
			return n, err
		}
		for _, d := range ds {
			if err := r.redrive(ctx, d); err != nil {
				// Its due time has moved on: the next sweeps after it take it again.
				return n, err
			}
			n++
		}
		if len(ds) < repairBatch {
			break
		}
	}
	if n > 0 {
		metricRepaired.Add(float64(n))
		r.log.Warn("repair sweep re-drove overdue deliveries", "deliveries", n, "overdue_by", r.after)
	}
	due, ok, err := r.store.OldestDue(ctx)
	if err != nil {
		return n, err
	}
	overdue := 0.0
	if ok {
		overdue = max(r.now().Sub(due).Seconds(), 0)
	}
	metricOldestOverdue.Set(overdue)
	return n, nil
}

// redrive puts a retry of d's next attempt on the work queue. It continues the ladder as if
// every attempt so far had failed on it.
func (r *Repair) redrive(ctx context.Context, d repository.Delivery) error {
	msg := broker.Retry{DeliveryID: d.ID, Attempt: d.Attempts + 1, Step: min(d.Attempts, r.steps)}
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	return r.pub.Publish(pctx, broker.Publishing{Key: r.queue, Mandatory: true, Msg: msg.Publishing(r.now())})
}
