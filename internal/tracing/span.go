package tracing

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of webhookd's own, beside the semantic conventions'.
const (
	// KeyMessageType is the kind of message: event, retry, redeliver or postponed.
	KeyMessageType = attribute.Key("webhookd.message.type")
	// KeyEventID is the event's id, as the monolith gave it.
	KeyEventID = attribute.Key("webhookd.event.id")
	// KeyEventName is the event's name, OBJECT.ACTION.
	KeyEventName = attribute.Key("webhookd.event.name")
	// KeyDeliveryID is the delivery's id, as X-Webhook-Delivery carries it.
	KeyDeliveryID = attribute.Key("webhookd.delivery.id")
	// KeyWebhookID is the webhook's id.
	KeyWebhookID = attribute.Key("webhookd.webhook.id")
	// KeyAttempt is the attempt's number, as X-Webhook-Attempt carries it.
	KeyAttempt = attribute.Key("webhookd.attempt")
	// KeyStatus is the status an outcome leaves its delivery in: pending, succeeded, failed.
	KeyStatus = attribute.Key("webhookd.delivery.status")
	// KeyWebhooks is how many webhooks a lookup found.
	KeyWebhooks = attribute.Key("webhookd.webhooks")
)

// Start starts a span named name as a child of ctx's span, on the tracer provider that made
// it. While ctx's span records nothing (tracing off, the trace not sampled, or no span at all)
// it makes none and returns ctx with that span, which End leaves as it is: a child would
// record nothing either.
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return tracerOf(parent.TracerProvider()).Start(ctx, name)
}

// End ends span, marking it failed with err when err is not nil. A span that records nothing
// is left alone.
func End(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// lastTracer caches the tracer of the provider seen last: the SDK's provider looks its tracers
// up under a mutex, which every span of every attempt would otherwise take.
var lastTracer atomic.Pointer[providerTracer]

type providerTracer struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

// tracerOf returns webhookd's tracer of tp. Providers that record are pointers (the SDK's),
// so comparing them is cheap and safe.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if c := lastTracer.Load(); c != nil && c.tp == tp {
		return c.t
	}
	t := tp.Tracer(Name)
	lastTracer.Store(&providerTracer{tp: tp, t: t})
	return t
}
