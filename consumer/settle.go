package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/backoff"
)

// verdict is how a message is settled.
type verdict int

const (
	ack verdict = iota
	requeue
)

// rejected marks an error that no retry of its message can fix.
type rejected struct{ err error }

func (r rejected) Error() string { return r.err.Error() }
func (r rejected) Unwrap() error { return r.err }

// Reject marks err as one that no retry of the message can fix: the consumer moves the message
// to the dead queue with err's text as its reason, and acks it once the dead queue has it.
func Reject(err error) error {
	if err == nil {
		return nil
	}
	return rejected{err}
}

// Rejectf is Reject of an error made as fmt.Errorf makes it.
func Rejectf(format string, args ...any) error { return Reject(fmt.Errorf(format, args...)) }

// IsRejected reports whether err, or an error it wraps, was marked with Reject.
func IsRejected(err error) bool {
	var r rejected
	return errors.As(err, &r)
}

// settle runs the handler on d and says how to settle it: the one place where a handler's
// error becomes ack, dead-letter or requeue. A panic becomes an error here.
func (c *Consumer) settle(ctx context.Context, d amqp.Delivery) verdict {
	err := c.handle(ctx, d)
	var r rejected
	if errors.As(err, &r) {
		err = c.deadLetter(ctx, d, r.Error())
	}
	if err == nil {
		return ack
	}
	c.log.Warn("message requeued", "type", d.Type, "routing_key", d.RoutingKey, "err", err)
	backoff.Sleep(ctx, c.cfg.RequeuePause)
	if n, _ := broker.DeliveryCount(d); n >= c.cfg.MaxRequeues {
		if err := c.requeueAfresh(ctx, d); err == nil {
			return ack
		}
	}
	return requeue
}

// requeueAfresh publishes a copy of d to the back of its queue, its delivery count at zero.
func (c *Consumer) requeueAfresh(ctx context.Context, d amqp.Delivery) error {
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	err := c.pub.Publish(pctx, broker.Publishing{Key: c.cfg.Queue, Mandatory: true, Msg: broker.Copy(d)})
	if err != nil {
		c.log.Warn("message not requeued afresh; nacked instead", "err", err)
		return err
	}
	metricMessages.WithLabelValues("requeued_afresh").Inc()
	return nil
}

// handle calls the handler, turning a panic into an error that requeues the message.
func (c *Consumer) handle(ctx context.Context, d amqp.Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return c.handler.Handle(ctx, d)
}

// deadLetter moves a message that cannot be processed to the dead queue with its reason.
func (c *Consumer) deadLetter(ctx context.Context, d amqp.Delivery, reason string) error {
	c.log.Warn("message dead-lettered", "reason", reason, "routing_key", d.RoutingKey, "type", d.Type)
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	err := c.pub.Publish(pctx, broker.Publishing{
		Key:       c.cfg.DeadQueue,
		Mandatory: true,
		Msg:       broker.DeadLetter(d, reason, c.now()),
	})
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	kind := d.Type
	if kind == "" {
		kind = "event"
	}
	metricDead.WithLabelValues(kind).Inc()
	return nil
}
