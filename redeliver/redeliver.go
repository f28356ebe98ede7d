// Package redeliver asks the workers for more attempts (contract §6): one redelivery message
// per delivery, published with confirms to the work queue. `webhookd redeliver`, `webhookd
// replay` and the delivery API all go through it, so that a redelivery is the same whoever
// asks for it.
package redeliver

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
)

// Publisher publishes a message and waits for the broker's confirm, as broker.Publisher does.
type Publisher interface {
	Publish(ctx context.Context, p broker.Publishing) error
}

// ErrNotConfirmed marks a redelivery the broker did not confirm: nacked, returned, or not
// answered in time. Asking again is safe: a redelivery attempts a delivery once more.
var ErrNotConfirmed = errors.New("redelivery not confirmed by the broker")

// inFlight bounds the redeliveries awaiting their confirms at once.
const inFlight = 64

// confirmTimeout bounds the wait for one redelivery's confirm.
const confirmTimeout = 30 * time.Second

// Publish publishes one redelivery message per id to queue through the default exchange,
// several awaiting their confirms at once, and returns how many the broker confirmed. It
// stops at the first failure. WithProgress among opts has it report each confirm.
func Publish(ctx context.Context, p Publisher, queue string, ids []string, opts ...Option) (int, error) {
	var sent atomic.Int64
	report := newReporter(opts, StepPublish, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for _, id := range ids {
		g.Go(func() error {
			pctx, cancel := context.WithTimeout(gctx, confirmTimeout)
			defer cancel()
			err := p.Publish(pctx, broker.Publishing{Key: queue, Mandatory: true, Msg: broker.Redelivery(id, time.Now())})
			if err == nil {
				sent.Add(1)
				report.add()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return int(sent.Load()), fmt.Errorf("%w: %w", ErrNotConfirmed, err)
	}
	return int(sent.Load()), nil
}

// Store is what a replay needs of the delivery log.
type Store interface {
	Unsent(ctx context.Context, w repository.Webhook, since, until time.Time) ([]string, error)
	CreateDelivery(ctx context.Context, eventID string, webhookID uint64) (string, error)
}

// Replay delivers to webhook w every stored event received in [since, until) that it matches
// and has no delivery for: it makes each delivery's row, pending and never attempted, then
// publishes its redelivery, and returns how many were confirmed. A replay cut short leaves
// rows that the next replay of the range finds unsent again. WithProgress among opts has it
// report each row made, then each confirm.
func Replay(ctx context.Context, store Store, p Publisher, queue string, w repository.Webhook, since, until time.Time, opts ...Option) (int, error) {
	events, err := store.Unsent(ctx, w, since, until)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(events))
	created := newReporter(opts, StepCreate, len(events))
	for _, e := range events {
		id, err := store.CreateDelivery(ctx, e, w.ID)
		if err != nil {
			return 0, err
		}
		ids = append(ids, id)
		created.add()
	}
	return Publish(ctx, p, queue, ids, opts...)
}
