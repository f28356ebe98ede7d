package tracing

import (
	"context"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads and writes W3C trace context: traceparent and tracestate. Baggage is not
// carried: nothing of webhookd's reads it.
var propagator = propagation.TraceContext{}

// Headers is a propagation.TextMapCarrier over a message's AMQP headers. A publisher may send
// a header as a long string or as bytes, and in any case: Get accepts both and, when no key
// matches exactly, the first key that matches regardless of case.
type Headers amqp.Table

var _ propagation.TextMapCarrier = Headers(nil)

// Get returns the value of key, or "" when there is none or it is not text.
func (h Headers) Get(key string) string {
	v, ok := h[key]
	if !ok {
		for k, kv := range h {
			if strings.EqualFold(k, key) {
				v, ok = kv, true
				break
			}
		}
	}
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

// Set sets key to value.
func (h Headers) Set(key, value string) { h[key] = value }

// Keys lists the header names.
func (h Headers) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Extract returns ctx with the remote span context that headers carry, if they carry a valid
// traceparent.
func Extract(ctx context.Context, headers amqp.Table) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, Headers(headers))
}

// Inject returns msg carrying the trace context of ctx's span, in a copy of its headers (the
// caller's table is left alone: it may be shared). msg is returned as it is when ctx has no
// valid span context.
func Inject(ctx context.Context, msg amqp.Publishing) amqp.Publishing {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return msg
	}
	h := make(Headers, len(msg.Headers)+2)
	for k, v := range msg.Headers {
		h[k] = v
	}
	propagator.Inject(ctx, h)
	msg.Headers = amqp.Table(h)
	return msg
}

// StartMessage starts the span of processing message d of queue on tracer t: a consumer span
// named "process <type>" (event, retry, redeliver or postponed), the child of the trace
// context d's headers carry, else the root of a new trace.
func StartMessage(ctx context.Context, t trace.Tracer, queue string, d amqp.Delivery) (context.Context, trace.Span) {
	kind := d.Type
	if kind == "" {
		kind = "event"
	}
	ctx = Extract(ctx, d.Headers)
	ctx, span := t.Start(ctx, "process "+kind, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemRabbitMQ,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(queue),
			semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey),
			KeyMessageType.String(kind),
		)
		if d.MessageId != "" {
			span.SetAttributes(semconv.MessagingMessageID(d.MessageId))
		}
	}
	return ctx, span
}
