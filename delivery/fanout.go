package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	// circuitSince is when the delivery was first held behind its webhook's open breaker;
	// zero if it was not (admit.go).
	circuitSince time.Time
	// slot is the rate-limit slot reserved for the attempt; zero for none.
	slot rateSlot
	// probe means the attempt is its webhook's breaker probe, claimed for it.
	probe bool
	// heldDue is the due time a hold wrote in the delivery's row, when it comes back from
	// one; zero otherwise (hold.go).
	heldDue time.Time
	// sequence is an ordered delivery's place among its object's (X-Webhook-Sequence); 0
	// for any other (ordered.go).
	sequence int
}

func (hd *Handler) handleEvent(ctx context.Context, d amqp.Delivery) error {
	ev, err := parseEvent(d.Body, broker.RoutingKey(d), hd.cfg.MaxEventBytes, hd.now())
	if err != nil {
		return err
	}
	isNew, err := hd.tracedClaim(ctx, ev)
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
	hooks, err := hd.tracedLookup(ctx, ev.AccountID, ev.Name)
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
		if !h.Matches(project) || done[h.ID] {
			continue
		}
		j := job{deliveryID: repository.DeliveryID(ev.ID, h.ID), event: ev, webhook: h, attempt: 1}
		if h.Ordered && ev.ObjectID.Valid {
			// The sequencer's copy of the event starts it in its turn (ordered.go). Its row,
			// due when the repair sweep would start it, covers a sequencer that did not see
			// the webhook ordered yet.
			if err := hd.leaveToSequencer(ctx, j); err != nil {
				return nil, err
			}
			continue
		}
		jobs = append(jobs, j)
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
	// A delivery settled or attempted is under way elsewhere (a failed attempt's retry is
	// parked before its outcome is recorded). One pending without an attempt may have a row
	// whose message was never confirmed (a hold writes both at once): it is made again, at the
	// cost of a duplicate when its message did go out.
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
