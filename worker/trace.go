package worker

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/delivery"
	"github.com/webhookd/webhookd/internal/tracing"
)

// tracedHandler runs h on each message in the span of processing it, made by tp and continuing
// the trace context in the message's headers. With tracing off it is h itself: a message then
// costs nothing more.
func tracedHandler(tp trace.TracerProvider, queue string, h consumer.Handler) consumer.Handler {
	if tracing.Off(tp) {
		return h
	}
	t := tp.Tracer(tracing.Name)
	return consumer.HandlerFunc(func(ctx context.Context, d amqp.Delivery) (err error) {
		ctx, span := tracing.StartMessage(ctx, t, queue, d)
		// Deferred, so that a panic, which the consumer turns into an error, ends it too.
		defer func() { tracing.End(span, err) }()
		return h.Handle(ctx, d)
	})
}

// tracedPublisher adds to each message published in a traced context that context's
// traceparent: a parked retry continues the trace of the attempt that parked it. With tracing
// off it is pub itself.
func tracedPublisher(tp trace.TracerProvider, pub delivery.Publisher) delivery.Publisher {
	if tracing.Off(tp) {
		return pub
	}
	return injectingPublisher{pub}
}

type injectingPublisher struct{ pub delivery.Publisher }

func (p injectingPublisher) Publish(ctx context.Context, m broker.Publishing) error {
	m.Msg = tracing.Inject(ctx, m.Msg)
	return p.pub.Publish(ctx, m)
}
