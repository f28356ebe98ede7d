package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/repository"
)

// handleRetry makes the next attempt of a delivery back from a retry queue.
func (hd *Handler) handleRetry(ctx context.Context, d amqp.Delivery) error {
	r, err := broker.ParseRetry(d.Headers)
	if err != nil {
		return consumer.Reject(err)
	}
	id, attempt, step := r.DeliveryID, r.Attempt, r.Step
	j, ok, err := hd.tracedLoadJob(ctx, id)
	if errors.Is(err, errNoRow) {
		return hd.waitForRow(ctx, d, r)
	}
	if err == nil && !ok {
		// Settled already: a message given back after the worker that settled it stopped.
		// That worker may not have started the next ordered delivery of its object.
		hd.settledInTurn(ctx, job{deliveryID: id, sequence: -1})
	}
	if err != nil || !ok {
		return err
	}
	if j.attempt > attempt {
		// A redelivery or a duplicate got there first.
		hd.log.Debug("stale retry dropped", "delivery_id", id, "attempt", attempt)
		return nil
	}
	if attempt > j.attempt+1 {
		// A retry is parked before its attempt's outcome is recorded, so the row may lag one
		// attempt behind, never more: the outcomes in between are still being recorded, or
		// the message is not the worker's own.
		return hd.waitForRow(ctx, d, r)
	}
	j.attempt, j.step = attempt, step
	return hd.deliver(ctx, j)
}

// handleRedeliver makes another attempt of a delivery asked for, whatever its status.
func (hd *Handler) handleRedeliver(ctx context.Context, d amqp.Delivery) error {
	id, err := broker.ParseRedelivery(d.Body)
	if err != nil {
		return consumer.Reject(err)
	}
	del, err := hd.store.GetDelivery(ctx, id)
	if errors.Is(err, repository.ErrNotFound) {
		return consumer.Rejectf("unknown delivery id %q", id)
	}
	if err != nil {
		return repository.Unavailable(err)
	}
	h, err := hd.store.Webhook(ctx, del.WebhookID)
	if errors.Is(err, repository.ErrNotFound) {
		return consumer.Rejectf("delivery %q: webhook %d was deleted", del.ID, del.WebhookID)
	}
	if err != nil {
		return repository.Unavailable(err)
	}
	if !h.Enabled {
		// A disabled webhook gets no deliveries. A delivery still pending settles as failed;
		// one that has settled keeps its outcome.
		hd.log.Info("redelivery to a disabled webhook not attempted", "delivery_id", del.ID, "webhook_id", del.WebhookID)
		if del.Status == repository.StatusPending {
			return hd.settleWithout(ctx, del, "webhook disabled")
		}
		return nil
	}
	ev, err := hd.store.GetEvent(ctx, del.EventID)
	if errors.Is(err, repository.ErrNotFound) {
		return consumer.Rejectf("delivery %q: event %q is no longer stored", del.ID, del.EventID)
	}
	if err != nil {
		return repository.Unavailable(err)
	}
	// A redelivery continues the attempt count and starts the ladder again.
	return hd.deliver(ctx, job{deliveryID: del.ID, event: ev, webhook: h, attempt: del.Attempts + 1, redelivery: true})
}

// loadJob loads a pending delivery for a retry. ok is false when there is nothing to do: the
// delivery has settled, or its webhook is gone or disabled (the delivery is then failed).
// errNoRow means a retry's delivery has no row (yet).
var errNoRow = errors.New("delivery has no row")

// waitForRow parks a retry whose delivery has no row yet, or a row more than one attempt
// behind it, in the first retry queue again. Its attempt's outcome is still being recorded
// (the retry is parked before it, and recording waits out a database that is locked or away);
// the retry is taken once the row has caught up. One that has waited longer than RepairAfter
// has no attempt behind it that will ever be recorded: a forged or foreign message,
// dead-lettered (a pending row is the repair sweep's). A waiting time from the future is
// forged too, and counts from now.
func (hd *Handler) waitForRow(ctx context.Context, d amqp.Delivery, r broker.Retry) error {
	now := hd.now()
	if r.WaitingSince.IsZero() || r.WaitingSince.After(now) {
		r.WaitingSince = now
	}
	if waited := now.Sub(r.WaitingSince); waited > hd.cfg.RepairAfter {
		return consumer.Rejectf("unknown delivery id %q or attempt %d: no row for it after %s", r.DeliveryID, r.Attempt, waited.Round(time.Millisecond))
	}
	hd.log.Info("retry came back before its delivery's row: parked again", "delivery_id", r.DeliveryID, "attempt", r.Attempt)
	metricWaitingForRow.Inc()
	if err := hd.publishRetry(ctx, r.Again(d, now), firstDelay(hd.cfg.Topology.Ladder)); err != nil {
		return fmt.Errorf("park retry again: %w", err)
	}
	return nil
}

func (hd *Handler) loadJob(ctx context.Context, id string) (job, bool, error) {
	del, err := hd.store.GetDelivery(ctx, id)
	if errors.Is(err, repository.ErrNotFound) {
		return job{}, false, errNoRow
	}
	if err != nil {
		return job{}, false, repository.Unavailable(err)
	}
	if del.Status != repository.StatusPending {
		return job{}, false, nil
	}
	return hd.jobOf(ctx, del)
}

// jobOf loads the webhook and the event of a delivery to attempt it again. ok is false when
// the webhook is gone or disabled, or the event no longer stored: a pending delivery is then
// failed, a settled one keeps its outcome.
func (hd *Handler) jobOf(ctx context.Context, del repository.Delivery) (job, bool, error) {
	return hd.jobFrom(ctx, del, hd.store)
}

// jobRows reads a delivery's webhook and event: the store, or rows read for many at once.
type jobRows interface {
	Webhook(ctx context.Context, id uint64) (repository.Webhook, error)
	GetEvent(ctx context.Context, id string) (repository.Event, error)
}

// jobFrom is jobOf with the webhook and the event read from rows.
func (hd *Handler) jobFrom(ctx context.Context, del repository.Delivery, rows jobRows) (job, bool, error) {
	h, err := rows.Webhook(ctx, del.WebhookID)
	reason := ""
	switch {
	case errors.Is(err, repository.ErrNotFound):
		reason = "webhook deleted"
	case err != nil:
		return job{}, false, repository.Unavailable(err)
	case !h.Enabled:
		reason = "webhook disabled"
	}
	var ev repository.Event
	if reason == "" {
		ev, err = rows.GetEvent(ctx, del.EventID)
		switch {
		case errors.Is(err, repository.ErrNotFound):
			reason = "event no longer stored"
		case err != nil:
			return job{}, false, repository.Unavailable(err)
		}
	}
	switch {
	case reason == "":
		return job{deliveryID: del.ID, event: ev, webhook: h, attempt: del.Attempts + 1}, true, nil
	case del.Status == repository.StatusPending:
		return job{}, false, hd.settleWithout(ctx, del, reason)
	default:
		hd.log.Info("delivery not attempted again", "delivery_id", del.ID, "webhook_id", del.WebhookID, "reason", reason)
		return job{}, false, nil
	}
}

// settleWithout fails a delivery that will not be attempted again.
func (hd *Handler) settleWithout(ctx context.Context, del repository.Delivery, reason string) error {
	hd.log.Info("delivery not attempted again", "delivery_id", del.ID, "webhook_id", del.WebhookID, "reason", reason)
	metricDeliveries.WithLabelValues("failed").Inc()
	_, err := hd.store.Record(ctx, repository.Outcome{
		DeliveryID: del.ID, EventID: del.EventID, WebhookID: del.WebhookID,
		Attempt: del.Attempts, Status: repository.StatusFailed, Error: reason, NoAttempt: true,
	})
	if err == nil {
		// An ordered delivery's place is not known here: Advance finds it, if it has one.
		hd.settledInTurn(ctx, job{deliveryID: del.ID, sequence: -1})
	}
	return repository.Unavailable(err)
}
