package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
)

// OrderedFinder tells whether some webhook is ordered.
type OrderedFinder interface {
	AnyOrdered(ctx context.Context) (bool, error)
}

// orderingBinder keeps the ordering queue bound to the events exchange while some webhook is
// ordered, and unbound otherwise, so that a worker without ordered webhooks pays nothing for
// the sequencer. It binds before the consumer takes its first message (apply, from the
// consumer's Declare) and then looks again every interval.
type orderingBinder struct {
	store    OrderedFinder
	topology broker.Topology
	open     ChannelOpener
	every    time.Duration
	log      *slog.Logger

	mu    sync.Mutex
	known bool // whether bound holds what was last applied, for the log
	bound bool
}

func newOrderingBinder(store OrderedFinder, topology broker.Topology, open ChannelOpener, every time.Duration, log *slog.Logger) *orderingBinder {
	return &orderingBinder{store: store, topology: topology, open: open, every: every, log: log}
}

// apply binds or unbinds on ch as the webhooks say. A database that does not answer leaves
// the binding as it is: the next look tries again.
func (b *orderingBinder) apply(ctx context.Context, ch *amqp.Channel) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	on, err := b.store.AnyOrdered(qctx)
	cancel()
	if err != nil {
		b.log.Warn("ordered webhooks not looked up; the ordering queue's binding stays", "err", err)
		return nil
	}
	// Applied every time, not only on a change: another worker may have seen the webhooks
	// otherwise a moment ago. Binding and unbinding are idempotent.
	if err := b.topology.BindOrdering(ch, on); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.known || b.bound != on {
		b.log.Info("ordering queue binding", "bound", on)
	}
	b.known, b.bound = true, on
	return nil
}

// run looks every interval until ctx ends, on a channel of its own.
func (b *orderingBinder) run(ctx context.Context) {
	t := time.NewTicker(b.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ch, err := b.open.Channel()
		if err != nil {
			continue // the publisher is reconnecting
		}
		if err := b.apply(ctx, ch); err != nil {
			b.log.Warn("ordering queue binding not changed", "err", err)
		}
		ch.Close()
	}
}
