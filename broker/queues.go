package broker

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/retry"
)

// Kinds of the worker's queues.
const (
	// KindWork is the work queue: events, retries coming back, redeliveries.
	KindWork = "work"
	// KindRetry is a TTL queue of the retry ladder.
	KindRetry = "retry"
	// KindDead is the dead queue.
	KindDead = "dead"
	// KindHold is a TTL queue where deliveries wait without an attempt (HoldDelays).
	KindHold = "hold"
	// KindOrdering is the sequencer's copy of the events (OrderingQueue).
	KindOrdering = "ordering"
	// KindDue is the due queue, where held deliveries come back to (DueQueue).
	KindDue = "due"
)

// Queue names one of the queues of a topology and says what it is.
type Queue struct {
	Name string
	// Kind is KindWork, KindRetry, KindHold, KindDue, KindOrdering or KindDead.
	Kind string
}

// Queues lists the topology's queues: the work queue, the retry queue of each distinct delay
// of the ladder, shortest first, the hold queues, shortest first, the due queue, and the dead
// queue.
func (t Topology) Queues() []Queue {
	qs := []Queue{{Name: t.Queue, Kind: KindWork}, {Name: t.OrderingQueue(), Kind: KindOrdering}}
	for _, d := range t.Ladder.Delays() {
		qs = append(qs, Queue{Name: retry.QueueName(t.Queue, d), Kind: KindRetry})
	}
	for _, d := range HoldDelays {
		qs = append(qs, Queue{Name: t.HoldQueue(d), Kind: KindHold})
	}
	qs = append(qs, Queue{Name: t.DueQueue(), Kind: KindDue})
	return append(qs, Queue{Name: t.DeadQueue(), Kind: KindDead})
}

// ErrNotConnected means the publisher has no connection at the moment.
var ErrNotConnected = errors.New("publisher not connected")

// Channel opens a channel on the publisher's current connection for the caller to own, use
// on one goroutine and close: for reads that need neither confirms nor a connection of their
// own, such as passive declares. The channel dies with the connection, when the publisher
// reconnects; open another then. It fails with ErrNotConnected while the publisher has no
// connection.
func (p *Publisher) Channel() (*amqp.Channel, error) {
	conn := p.conn.Load()
	if conn == nil {
		return nil, ErrNotConnected
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("channel.open: %w", err)
	}
	return ch, nil
}

// Inspector reads queues with passive declares, on a channel of its own that it opens when it
// first needs one and again after a queue that does not exist closed it (the broker's 404).
// It is for one goroutine.
type Inspector struct {
	open func() (*amqp.Channel, error)
	ch   *amqp.Channel
}

// NewInspector makes an Inspector that gets its channels from open.
func NewInspector(open func() (*amqp.Channel, error)) *Inspector {
	return &Inspector{open: open}
}

// Inspect reads queue name: its ready messages and its consumers.
func (in *Inspector) Inspect(name string) (amqp.Queue, error) {
	if in.ch == nil || in.ch.IsClosed() {
		ch, err := in.open()
		if err != nil {
			return amqp.Queue{}, err
		}
		in.ch = ch
	}
	q, err := in.ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return amqp.Queue{}, fmt.Errorf("queue.declare passive %s: %w", name, err)
	}
	return q, nil
}

// Close closes the channel, if one is open.
func (in *Inspector) Close() {
	if in.ch != nil && !in.ch.IsClosed() {
		in.ch.Close()
	}
}
