package broker

import (
	"fmt"

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
	if _, err := ch.QueueDeclare(t.DeadQueue(), true, false, false, false, t.queueArgs()); err != nil {
		return fmt.Errorf("queue.declare %s: %w", t.DeadQueue(), err)
	}
	for _, d := range t.Ladder.Delays() {
		name := retry.QueueName(t.Queue, d)
		if _, err := ch.QueueDeclare(name, true, false, false, false, t.retryArgs(d.Milliseconds())); err != nil {
			return fmt.Errorf("queue.declare %s: %w", name, err)
		}
	}
	return nil
}
