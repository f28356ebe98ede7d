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
	"github.com/webhookd/webhookd/retry"
)

// postpone parks a delivery in the first retry queue without using up an attempt. Deliveries
// postponed at the same time share one message, and one publisher confirm: a slow webhook
// that gets as many events as a fast one must cost a fraction of a delivery per event.
func (hd *Handler) postpone(ctx context.Context, j job) error {
	p := &broker.Postponed{
		Delivery: j.deliveryID, Event: j.event.ID, Webhook: j.webhook.ID,
		Attempt: j.attempt, Step: j.step, Redelivery: j.redelivery,
	}
	if err := hd.postponed.Do(ctx, p); err != nil {
		return fmt.Errorf("postpone delivery: %w", err)
	}
	// A first attempt's delivery has no row yet: it gets one once the message is confirmed,
	// pending and due when the postponement ends, so that the repair sweep sees it should the
	// message be lost, and a copy of the event given back after a lost channel leaves it to
	// the message (finishEvent). Should the message come back first, it finds no row and
	// makes the first attempt all the same.
	if j.attempt == 1 && !j.redelivery {
		_, err := hd.record(ctx, repository.Outcome{
			DeliveryID: j.deliveryID, EventID: j.event.ID, WebhookID: j.webhook.ID,
			Status: repository.StatusPending, Due: hd.now().Add(firstDelay(hd.cfg.Topology.Ladder)), NoAttempt: true,
		})
		if err != nil {
			return err
		}
	}
	metricPostponed.Inc()
	hd.log.Debug("delivery postponed: webhook slow and at its share of attempts, or slow webhooks at theirs",
		"delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "attempt", j.attempt)
	return nil
}

// publishPostponed is the postponements' flush: one message to the first retry queue,
// confirmed by the broker.
func (hd *Handler) publishPostponed(ctx context.Context, ps []*broker.Postponed) error {
	msg, err := broker.PostponedMessage(ps, hd.now())
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	return hd.pub.Publish(pctx, broker.Publishing{
		Key:       retry.QueueName(hd.cfg.Topology.Queue, firstDelay(hd.cfg.Topology.Ladder)),
		Mandatory: true,
		Msg:       msg,
	})
}

// firstDelay is the ladder's first delay: where postponed deliveries wait. A worker's ladder
// has at least one delay (config checks it); none gives 0.
func firstDelay(l retry.Ladder) time.Duration {
	if d := l.Delays(); len(d) > 0 {
		return d[0]
	}
	return 0
}

// handlePostponed makes the attempts of a message of postponed deliveries. The message is
// acked once every one has a durable outcome, or has been postponed again.
func (hd *Handler) handlePostponed(ctx context.Context, d amqp.Delivery) error {
	ps, err := broker.ParsePostponed(d.Body)
	if err != nil {
		return consumer.Reject(err)
	}
	for _, p := range ps {
		if p.Delivery != repository.DeliveryID(p.Event, p.Webhook) {
			return consumer.Rejectf("postponed deliveries: %+v is not a valid delivery", p)
		}
	}
	// Read for all of them at once: a message of held deliveries brings back hundreds, due
	// for their rate-limit slots.
	rows, err := hd.preload(ctx, ps)
	if err != nil {
		return repository.Unavailable(err)
	}
	var jobs []job
	for _, p := range ps {
		j, ok, err := hd.postponedJob(ctx, p, rows)
		if err != nil {
			return err
		}
		if ok {
			jobs = append(jobs, j)
		}
	}
	return hd.runAll(ctx, jobs)
}

// postponedJob loads a postponed delivery's job from rows. ok is false when there is nothing
// to do.
func (hd *Handler) postponedJob(ctx context.Context, p broker.Postponed, rows *preloaded) (job, bool, error) {
	del, err := rows.delivery(p.Delivery)
	switch {
	case errors.Is(err, repository.ErrNotFound):
		// Never attempted: the delivery gets its row with its first outcome.
		del = repository.Delivery{ID: p.Delivery, EventID: p.Event, WebhookID: p.Webhook, Status: repository.StatusPending}
	case err != nil:
		return job{}, false, repository.Unavailable(err)
	case p.Redelivery:
	case del.Status != repository.StatusPending:
		return job{}, false, nil
	case staleHold(p, del):
		// A held copy whose row has moved on: another copy is the live one.
		hd.log.Debug("stale held delivery dropped", "delivery_id", p.Delivery, "attempt", p.Attempt)
		metricStaleHolds.Inc()
		return job{}, false, nil
	}
	j, ok, err := hd.jobFrom(ctx, del, rows)
	if err != nil || !ok {
		return j, ok, err
	}
	if !p.Redelivery && j.attempt > p.Attempt {
		// A redelivery or a duplicate got there first.
		hd.log.Debug("stale postponed delivery dropped", "delivery_id", p.Delivery, "attempt", p.Attempt)
		return job{}, false, nil
	}
	j.attempt, j.step, j.redelivery = p.Attempt, p.Step, p.Redelivery
	heldFields(&j, p, del)
	return j, true, nil
}
