package delivery

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/batch"
	"github.com/webhookd/webhookd/repository"
)

// hold parks a delivery the policy does not admit yet in the hold queue of the longest delay
// not longer than its wait, without using an attempt, as postpone does for slow webhooks.
// Its row is written in the same moment, pending and due when it comes back: so the repair
// sweep re-drives it should the message be lost, and the message carries that due time, so
// that a copy overtaken by another hold, a release or an attempt is known stale when it comes
// back. Deliveries held at once share a message per queue. A delivery held again soon after
// its last hold keeps the due time that hold wrote, and writes nothing: its row is due less
// than a third of RepairAfter before it comes back, too little for the repair sweep.
func (hd *Handler) hold(ctx context.Context, j job, a admission) error {
	now := hd.now()
	delay := holdDelay(a.until.Sub(now))
	back := now.Add(delay).Truncate(time.Microsecond)
	due, write := back, true
	if !j.heldDue.IsZero() && !j.redelivery && back.Sub(j.heldDue) < hd.cfg.RepairAfter/3 {
		due, write = j.heldDue, false
	}
	since := j.circuitSince
	if a.reason == heldCircuit && since.IsZero() {
		since = now
	}
	p := &broker.Postponed{
		Delivery: j.deliveryID, Event: j.event.ID, Webhook: j.webhook.ID,
		Attempt: j.attempt, Step: j.step, Redelivery: j.redelivery,
		Due: due.UnixMicro(), CircuitSince: unixMilli(since), Slot: unixMicro(a.slot.at), SlotBy: unixMicro(a.slot.by),
	}
	var g errgroup.Group
	if write {
		g.Go(func() error {
			_, err := hd.record(ctx, repository.Outcome{
				DeliveryID: j.deliveryID, EventID: j.event.ID, WebhookID: j.webhook.ID,
				Attempt: j.attempt - 1, Due: back, Held: true,
			})
			return err
		})
	}
	g.Go(func() error {
		if err := hd.holds[delay].Do(ctx, p); err != nil {
			return fmt.Errorf("hold delivery: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	metricHeld.WithLabelValues(string(a.reason)).Inc()
	hd.log.Debug("delivery held", "delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "attempt", j.attempt,
		"reason", a.reason, "until", a.until, "back_in", delay)
	return nil
}

// holdDelay is the longest hold delay not longer than wait, or the shortest one.
func holdDelay(wait time.Duration) time.Duration {
	d := broker.HoldDelays[0]
	for _, h := range broker.HoldDelays {
		if h <= wait {
			d = h
		}
	}
	return d
}

// newHolds makes the batchers of the hold queues, each flushing into its own queue.
func (hd *Handler) newHolds() map[time.Duration]*batch.Batcher[broker.Postponed] {
	m := make(map[time.Duration]*batch.Batcher[broker.Postponed], len(broker.HoldDelays))
	for _, d := range broker.HoldDelays {
		queue := hd.cfg.Topology.HoldQueue(d)
		m[d] = batch.New(func(ctx context.Context, ps []*broker.Postponed) error {
			msg, err := broker.PostponedMessage(ps, hd.now())
			if err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
			defer cancel()
			return hd.pub.Publish(pctx, broker.Publishing{Key: queue, Mandatory: true, Msg: msg})
		}, batch.Options[broker.Postponed]{Flushers: holdFlushers, Max: holdBatch})
	}
	return m
}

// holdFlushers and holdBatch shape the hold queues' publishes. A fan-out under rate limits
// holds thousands of deliveries at once, and a confirmed publish to a quorum queue takes tens
// of milliseconds on a loaded machine: several publish at once, each of many deliveries, so
// that a hold's time in the queue starts close to when it was decided.
const (
	holdFlushers = 4
	holdBatch    = 512
)

// failHeld fails a delivery held too long behind its webhook's open breaker, without an
// attempt. It does not count toward DISABLE_AFTER: the breaker that stays open for its whole
// hold disables the webhook (disableOpen). A redelivery keeps the outcome the delivery had.
func (hd *Handler) failHeld(ctx context.Context, j job, reason string) error {
	hd.jobLog(j).Warn("delivery failed without an attempt", "reason", reason, "held_since", j.circuitSince)
	if j.redelivery {
		return nil
	}
	metricDeliveries.WithLabelValues("failed").Inc()
	_, err := hd.record(ctx, repository.Outcome{
		DeliveryID: j.deliveryID, EventID: j.event.ID, WebhookID: j.webhook.ID,
		Attempt: j.attempt - 1, Status: repository.StatusFailed, Error: reason, NoAttempt: true,
	})
	if err == nil {
		hd.settledInTurn(ctx, j)
	}
	return err
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// heldFields copies what a held delivery's message carries into its job: when it was first
// held for an open breaker, the slot it reserved, whether it is a probe, and the due time its
// hold wrote, if its row, del, holds it (a held copy may be back before its row is written).
func heldFields(j *job, p broker.Postponed, del repository.Delivery) {
	if p.CircuitSince > 0 {
		j.circuitSince = time.UnixMilli(p.CircuitSince)
	}
	if p.Slot > 0 && p.SlotBy > 0 {
		j.slot = rateSlot{at: time.UnixMicro(p.Slot), by: time.UnixMicro(p.SlotBy)}
	}
	j.probe = p.Probe
	if p.Due > 0 && del.DueAt.Valid && del.DueAt.Time.UnixMicro() == p.Due {
		j.heldDue = time.UnixMicro(p.Due)
	}
}

// staleHold reports whether a held delivery's message has been overtaken: its row's due time
// is no longer the one its hold wrote (another hold, a release or an attempt came since).
// Postponements and redeliveries carry no due time to check.
func staleHold(p broker.Postponed, del repository.Delivery) bool {
	if p.Due == 0 || p.Redelivery || del.ID == "" {
		return false
	}
	return !del.DueAt.Valid || del.DueAt.Time.UnixMicro() != p.Due
}

// Batches reads rows by id, many in one query.
type Batches interface {
	DeliveriesByID(ctx context.Context, ids []string) (map[string]repository.Delivery, error)
	WebhooksByID(ctx context.Context, ids []uint64) (map[uint64]repository.Webhook, error)
	EventsByID(ctx context.Context, ids []string) (map[string]repository.Event, error)
}

// preloaded is the rows of a message of postponed or held deliveries, read in three queries.
type preloaded struct {
	dels   map[string]repository.Delivery
	hooks  map[uint64]repository.Webhook
	events map[string]repository.Event
}

func (hd *Handler) preload(ctx context.Context, ps []broker.Postponed) (*preloaded, error) {
	var dels, events []string
	var hooks []uint64
	seenHook := map[uint64]bool{}
	for _, p := range ps {
		dels, events = append(dels, p.Delivery), append(events, p.Event)
		if !seenHook[p.Webhook] {
			seenHook[p.Webhook] = true
			hooks = append(hooks, p.Webhook)
		}
	}
	var r preloaded
	var err error
	if r.dels, err = hd.store.DeliveriesByID(ctx, dels); err != nil {
		return nil, err
	}
	if r.hooks, err = hd.store.WebhooksByID(ctx, hooks); err != nil {
		return nil, err
	}
	if r.events, err = hd.store.EventsByID(ctx, events); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *preloaded) delivery(id string) (repository.Delivery, error) {
	if d, ok := r.dels[id]; ok {
		return d, nil
	}
	return repository.Delivery{}, fmt.Errorf("delivery %q: %w", id, repository.ErrNotFound)
}

// Webhook is the preloaded webhook id, for jobFrom.
func (r *preloaded) Webhook(_ context.Context, id uint64) (repository.Webhook, error) {
	if h, ok := r.hooks[id]; ok {
		return h, nil
	}
	return repository.Webhook{}, fmt.Errorf("webhook %d: %w", id, repository.ErrNotFound)
}

// GetEvent is the preloaded event id, for jobFrom.
func (r *preloaded) GetEvent(_ context.Context, id string) (repository.Event, error) {
	if e, ok := r.events[id]; ok {
		return e, nil
	}
	return repository.Event{}, fmt.Errorf("event %q: %w", id, repository.ErrNotFound)
}
