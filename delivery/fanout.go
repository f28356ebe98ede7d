package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/repository"
)

// job is one attempt of one delivery.
type job struct {
	deliveryID string
	event      repository.Event
	webhook    repository.Webhook
	attempt    int
	step       int
	// redelivery marks an attempt asked for whatever the delivery's status.
	redelivery bool
}

func (hd *Handler) handleEvent(ctx context.Context, d amqp.Delivery) error {
	ev, err := parseEvent(d.Body, broker.RoutingKey(d), hd.cfg.MaxEventBytes, hd.now())
	if err != nil {
		return err
	}
	isNew, err := hd.store.Claim(ctx, ev)
	if errors.Is(err, repository.ErrTooLarge) {
		return consumer.Reject(err)
	}
	if err != nil {
		return repository.Unavailable(fmt.Errorf("claim event: %w", err))
	}
	if !isNew {
		if !broker.Redelivered(d) {
			hd.log.Info("duplicate event ignored", "event_id", ev.ID, "event", ev.Name)
			return nil
		}
		// The broker gave this message back after a lost channel or a crash: finish the
		// deliveries that were never attempted, of the event as first stored. Those attempted
		// already have an outcome, and a failed one a retry message parked before its
		// outcome was recorded.
		return hd.finishEvent(ctx, ev.ID)
	}
	jobs, err := hd.jobs(ctx, ev, nil)
	if err != nil {
		return err
	}
	return hd.runAll(ctx, jobs)
}

// jobs makes the first attempts of ev's deliveries to the webhooks subscribed to it, leaving
// out those in done.
func (hd *Handler) jobs(ctx context.Context, ev repository.Event, done map[uint64]bool) ([]job, error) {
	hooks, err := hd.webhooks.Webhooks(ctx, ev.AccountID, ev.Name)
	if err != nil {
		return nil, repository.Unavailable(fmt.Errorf("look up webhooks: %w", err))
	}
	var project *uint64
	if ev.ProjectID.Valid {
		p := uint64(ev.ProjectID.Int64)
		project = &p
	}
	var jobs []job
	for _, h := range hooks {
		if h.Matches(project) && !done[h.ID] {
			jobs = append(jobs, job{deliveryID: repository.DeliveryID(ev.ID, h.ID), event: ev, webhook: h, attempt: 1})
		}
	}
	return jobs, nil
}

// finishEvent makes the first attempts of a stored event's deliveries that have none yet.
func (hd *Handler) finishEvent(ctx context.Context, eventID string) error {
	ev, err := hd.store.GetEvent(ctx, eventID)
	if err != nil {
		return repository.Unavailable(err)
	}
	ds, err := hd.store.EventDeliveries(ctx, eventID)
	if err != nil {
		return repository.Unavailable(err)
	}
	done := map[uint64]bool{}
	for _, del := range ds {
		if del.Status != repository.StatusPending || del.Attempts > 0 {
			done[del.WebhookID] = true
		}
	}
	jobs, err := hd.jobs(ctx, ev, done)
	if err != nil {
		return err
	}
	return hd.runAll(ctx, jobs)
}

// runAll attempts every job at once (each takes a slot of the pool) and returns the first
// error of a job whose outcome is not durable: the message must then not be acked.
func (hd *Handler) runAll(ctx context.Context, jobs []job) error {
	if len(jobs) == 1 {
		return hd.deliver(ctx, jobs[0])
	}
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = hd.deliver(ctx, j)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
