package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// TypePostponed marks a message of postponed deliveries: body a JSON array of
// postponedDelivery.
const TypePostponed = "postponed"

// postponedDelivery is a delivery put off because its webhook was slow and had its share of
// attempts in flight, or its part of the slow webhooks' bound (see hookShares). It carries
// what is needed to make the attempt it has not made yet, even for a first attempt, whose
// delivery has no row.
type postponedDelivery struct {
	Delivery string `json:"delivery"`
	Event    string `json:"event"`
	Webhook  uint64 `json:"webhook"`
	Attempt  int    `json:"attempt"`
	Step     int    `json:"step"`
	// Redelivery marks an attempt asked for whatever the delivery's status.
	Redelivery bool `json:"redelivery,omitempty"`
}

// postpone parks a delivery in the first retry queue without using up an attempt. Deliveries
// postponed at the same time share one message, and one publisher confirm: a slow webhook
// that gets as many events as a fast one must cost a fraction of a delivery per event.
func (w *Worker) postpone(ctx context.Context, j job) error {
	p := &postponedDelivery{
		Delivery: j.deliveryID, Event: j.event.ID, Webhook: j.webhook.ID,
		Attempt: j.attempt, Step: j.step, Redelivery: j.redelivery,
	}
	if err := w.postponed.Do(ctx, p); err != nil {
		return fmt.Errorf("postpone delivery: %w", err)
	}
	metricPostponed.Inc()
	w.log.Debug("delivery postponed: webhook slow and at its share of attempts, or slow webhooks at theirs",
		"delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "attempt", j.attempt)
	return nil
}

// publishPostponed is the postponements' flush: one message to the first retry queue,
// confirmed by the broker.
func (w *Worker) publishPostponed(ctx context.Context, ps []*postponedDelivery) error {
	body, err := json.Marshal(ps)
	if err != nil {
		return fmt.Errorf("encode postponed deliveries: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return w.pub.Publish(pctx, Publishing{
		Key:       retry.QueueName(w.cfg.Topology.Queue, firstDelay(w.cfg.Topology.Ladder)),
		Mandatory: true,
		Msg: amqp.Publishing{
			Type:         TypePostponed,
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
			Body:         body,
		},
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
func (w *Worker) handlePostponed(ctx context.Context, d amqp.Delivery) error {
	var ps []postponedDelivery
	if err := json.Unmarshal(d.Body, &ps); err != nil || len(ps) == 0 {
		return poisonf("postponed deliveries: want a JSON array of deliveries")
	}
	for _, p := range ps {
		if p.Event == "" || p.Delivery != repository.DeliveryID(p.Event, p.Webhook) || p.Attempt < 1 || p.Step < 0 {
			return poisonf("postponed deliveries: %+v is not a valid delivery", p)
		}
	}
	var jobs []job
	for _, p := range ps {
		j, ok, err := w.postponedJob(ctx, p)
		if err != nil {
			return err
		}
		if ok {
			jobs = append(jobs, j)
		}
	}
	return w.runAll(ctx, jobs)
}

// postponedJob loads a postponed delivery's job. ok is false when there is nothing to do.
func (w *Worker) postponedJob(ctx context.Context, p postponedDelivery) (job, bool, error) {
	del, err := w.store.GetDelivery(ctx, p.Delivery)
	switch {
	case errors.Is(err, repository.ErrNotFound):
		// Never attempted: the delivery gets its row with its first outcome.
		del = repository.Delivery{ID: p.Delivery, EventID: p.Event, WebhookID: p.Webhook, Status: repository.StatusPending}
	case err != nil:
		return job{}, false, db(err)
	case p.Redelivery:
	case del.Status != repository.StatusPending:
		return job{}, false, nil
	}
	j, ok, err := w.jobOf(ctx, del)
	if err != nil || !ok {
		return j, ok, err
	}
	if !p.Redelivery && j.attempt > p.Attempt {
		// A redelivery or a duplicate got there first.
		w.log.Debug("stale postponed delivery dropped", "delivery_id", p.Delivery, "attempt", p.Attempt)
		return job{}, false, nil
	}
	j.attempt, j.step, j.redelivery = p.Attempt, p.Step, p.Redelivery
	return j, true, nil
}
