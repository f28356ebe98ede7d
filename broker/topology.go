package broker

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/retry"
)

// NotificationExchange is the topic exchange webhook.disabled notifications go to.
const NotificationExchange = "webhookd.notifications"

// Topology names what the worker declares on the broker.
type Topology struct {
	// Exchange is the topic exchange of incoming events.
	Exchange string
	// Queue is the work queue; the retry and dead queues are named after it.
	Queue string
	// QueueType is "quorum" or "classic".
	QueueType string
	// Ladder is the retry ladder; each distinct delay has a TTL queue.
	Ladder retry.Ladder
}

// DeadQueue is the queue of messages that cannot be processed.
func (t Topology) DeadQueue() string { return t.Queue + ".dead" }

// OrderingQueue is the queue of the sequencer: a copy of every event, consumed by one worker
// at a time (single active consumer), so that ordered webhooks get each object's events in
// publish order (contract §9).
func (t Topology) OrderingQueue() string { return t.Queue + ".ordered" }

// HoldDelays are the waits of the hold queues, shortest first: a delivery that may not be
// attempted yet (a rate limit, a Retry-After pause, an open breaker, the worker's own outage)
// waits in the longest that is not longer than its wait, and looks again when it is back. No
// two are more than six times apart, so that a wait takes few hops.
var HoldDelays = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// HoldQueue is the TTL queue of hold delay d, "<queue>.hold.<d>", which dead-letters, at least
// once like the retry queues, to the due queue.
func (t Topology) HoldQueue(d time.Duration) string {
	return t.Queue + ".hold." + strings.TrimPrefix(retry.QueueName("", d), ".retry.")
}

// DueQueue, "<queue>.due", is where held deliveries come back to, and where those a closed
// breaker releases go: consumed beside the work queue, it brings them back on time for their
// rate-limit slots however many events wait in the work queue.
func (t Topology) DueQueue() string { return t.Queue + ".due" }

// holdArgs makes a hold queue: a TTL queue like the retry queues, dead-lettering to the due
// queue.
func (t Topology) holdArgs(ttlMillis int64) amqp.Table {
	args := t.retryArgs(ttlMillis)
	args["x-dead-letter-routing-key"] = t.DueQueue()
	return args
}

func (t Topology) queueArgs() amqp.Table {
	if t.QueueType == "classic" {
		return amqp.Table{"x-queue-type": "classic"}
	}
	return amqp.Table{"x-queue-type": "quorum"}
}

// retryArgs makes a TTL queue that dead-letters expired messages back to the work queue. On
// quorum queues dead-lettering is at-least-once, which RabbitMQ only allows with
// reject-publish overflow: a message leaves the TTL queue only once the work queue has it.
func (t Topology) retryArgs(ttlMillis int64) amqp.Table {
	args := t.queueArgs()
	args["x-message-ttl"] = ttlMillis
	args["x-dead-letter-exchange"] = ""
	args["x-dead-letter-routing-key"] = t.Queue
	if t.QueueType != "classic" {
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	return args
}

// Declare declares the exchanges and queues idempotently, so that publisher and worker may
// start in either order.
func (t Topology) Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange.declare %s: %w", t.Exchange, err)
	}
	if err := ch.ExchangeDeclare(NotificationExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange.declare %s: %w", NotificationExchange, err)
	}
	// A message the broker itself gives up on (RabbitMQ 4's quorum queues stop redelivering
	// after a delivery limit) goes to the dead queue rather than nowhere.
	work := t.queueArgs()
	work["x-dead-letter-exchange"] = ""
	work["x-dead-letter-routing-key"] = t.DeadQueue()
	if _, err := ch.QueueDeclare(t.Queue, true, false, false, false, work); err != nil {
		return fmt.Errorf("queue.declare %s: %w", t.Queue, err)
	}
	if err := ch.QueueBind(t.Queue, "*.*", t.Exchange, false, nil); err != nil {
		return fmt.Errorf("queue.bind %s: %w", t.Queue, err)
	}
	// Bound to the exchange only while some webhook is ordered (BindOrdering).
	ordering := t.queueArgs()
	ordering["x-single-active-consumer"] = true
	if _, err := ch.QueueDeclare(t.OrderingQueue(), true, false, false, false, ordering); err != nil {
		return fmt.Errorf("queue.declare %s: %w", t.OrderingQueue(), err)
	}
	if _, err := ch.QueueDeclare(t.DeadQueue(), true, false, false, false, t.queueArgs()); err != nil {
		return fmt.Errorf("queue.declare %s: %w", t.DeadQueue(), err)
	}
	for _, d := range t.Ladder.Delays() {
		name := retry.QueueName(t.Queue, d)
		if _, err := ch.QueueDeclare(name, true, false, false, false, t.retryArgs(d.Milliseconds())); err != nil {
			return fmt.Errorf("queue.declare %s: %w", name, err)
		}
	}
	due := t.queueArgs()
	due["x-dead-letter-exchange"] = ""
	due["x-dead-letter-routing-key"] = t.DeadQueue()
	if _, err := ch.QueueDeclare(t.DueQueue(), true, false, false, false, due); err != nil {
		return fmt.Errorf("queue.declare %s: %w", t.DueQueue(), err)
	}
	for _, d := range HoldDelays {
		name := t.HoldQueue(d)
		if _, err := ch.QueueDeclare(name, true, false, false, false, t.holdArgs(d.Milliseconds())); err != nil {
			return fmt.Errorf("queue.declare %s: %w", name, err)
		}
	}
	return nil
}

// BindOrdering binds the ordering queue to the events exchange, or unbinds it: while no webhook
// is ordered, events are not copied there, and cost the broker nothing more.
func (t Topology) BindOrdering(ch *amqp.Channel, on bool) error {
	if on {
		if err := ch.QueueBind(t.OrderingQueue(), "*.*", t.Exchange, false, nil); err != nil {
			return fmt.Errorf("queue.bind %s: %w", t.OrderingQueue(), err)
		}
		return nil
	}
	if err := ch.QueueUnbind(t.OrderingQueue(), "*.*", t.Exchange, nil); err != nil {
		return fmt.Errorf("queue.unbind %s: %w", t.OrderingQueue(), err)
	}
	return nil
}
