package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
)

// consumerTag names the consumer on its channel.
const consumerTag = "webhookd"

// settlement is how a handler wants its message settled, handed back to the channel's owner.
type settlement struct {
	tag     uint64
	verdict verdict
}

// session consumes on one connection until it breaks or ctx ends. It reports whether it got
// as far as consuming. It is the only goroutine that uses the channel.
func (c *Consumer) session(ctx, work context.Context, cancelWork context.CancelFunc) (bool, error) {
	conn, err := broker.Dial(c.cfg.AMQPURL, c.cfg.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel.open: %w", err)
	}
	if c.cfg.Declare != nil {
		if err := c.cfg.Declare(ch); err != nil {
			return false, err
		}
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("basic.qos: %w", err)
	}
	deliveries, err := ch.Consume(c.cfg.Queue, consumerTag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("basic.consume %s: %w", c.cfg.Queue, err)
	}
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))

	settles := make(chan settlement, c.cfg.Prefetch)
	done := make(chan struct{})
	defer close(done)
	// Handlers are kept for the session rather than started per message: a goroutine that
	// has made a POST has grown its stack, and the next message need not grow one again.
	pool := make(chan amqp.Delivery)
	inFlight := 0
	c.consuming.Store(true)
	defer c.consuming.Store(false)
	c.log.Info("consuming", "queue", c.cfg.Queue, "prefetch", c.cfg.Prefetch)

	var shutdown <-chan time.Time
	cancelled := false
	stopping := ctx.Done()
	pausePoll := time.NewTicker(250 * time.Millisecond)
	defer pausePoll.Stop()
	for {
		// While paused no new message is taken: it stays with the broker, or in the prefetch
		// buffer, unacknowledged.
		in := deliveries
		if stopping == nil || c.cfg.Paused() {
			in = nil
		}
		select {
		case d, ok := <-in:
			if !ok {
				return true, errors.New("deliveries channel closed")
			}
			inFlight++
			select {
			case pool <- d:
			default:
				// Every handler is busy: one more joins the pool, and stays for the session.
				c.handlers.Add(1)
				go func() {
					defer c.handlers.Done()
					for {
						v := c.settle(work, d)
						select {
						case settles <- settlement{d.DeliveryTag, v}:
						case <-done:
							// The channel is gone; the broker has requeued the message.
							return
						}
						select {
						case d = <-pool:
						case <-done:
							return
						}
					}
				}()
			}
		case s := <-settles:
			inFlight--
			var err error
			if s.verdict == ack {
				err = ch.Ack(s.tag, false)
				metricMessages.WithLabelValues("ack").Inc()
			} else {
				err = ch.Nack(s.tag, false, true)
				metricMessages.WithLabelValues("requeue").Inc()
			}
			if err != nil {
				return true, fmt.Errorf("basic.ack: %w", err)
			}
			if stopping == nil && inFlight == 0 {
				return true, nil
			}
		case <-pausePoll.C:
			// Asks Paused again.
		case <-stopping:
			// Stop taking messages; settle those in flight.
			stopping = nil
			c.consuming.Store(false)
			if err := ch.Cancel(consumerTag, false); err != nil {
				return true, fmt.Errorf("basic.cancel: %w", err)
			}
			if inFlight == 0 {
				return true, nil
			}
			c.log.Info("shutting down: waiting for messages in flight", "messages", inFlight, "timeout", c.cfg.ShutdownTimeout)
			shutdown = time.After(c.cfg.ShutdownTimeout)
		case <-shutdown:
			if cancelled {
				// Cancelled handlers did not settle in time: closing the connection
				// requeues their messages.
				return true, nil
			}
			c.log.Warn("shutdown timeout: cancelling messages in flight; they go back to the queue", "messages", inFlight)
			cancelWork()
			cancelled = true
			shutdown = time.After(5 * time.Second)
		case err := <-connClosed:
			return true, fmt.Errorf("connection closed: %v", err)
		case err := <-chClosed:
			return true, fmt.Errorf("channel closed: %v", err)
		}
	}
}
