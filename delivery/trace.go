package delivery

import (
	"context"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/webhookd/webhookd/internal/tracing"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// The steps of a message, each in a span of its own under the message's span (see package
// tracing). While the message's span records nothing, as when tracing is off, each is its step
// and a context lookup: no span is made, no attribute built.

// tracedClaim is store.Claim in a "claim" span. The event's id and name also go on the
// message's span, so that its trace can be found by either.
func (hd *Handler) tracedClaim(ctx context.Context, ev repository.Event) (bool, error) {
	if msg := trace.SpanFromContext(ctx); msg.IsRecording() {
		msg.SetAttributes(tracing.KeyEventID.String(ev.ID), tracing.KeyEventName.String(ev.Name))
	}
	ctx, span := tracing.Start(ctx, "claim")
	isNew, err := hd.store.Claim(ctx, ev)
	if span.IsRecording() {
		span.SetAttributes(tracing.KeyEventID.String(ev.ID), attribute.Bool("webhookd.event.new", isNew))
	}
	tracing.End(span, err)
	return isNew, err
}

// tracedLookup is the lookup of the webhooks subscribed to an event, in a "lookup" span.
func (hd *Handler) tracedLookup(ctx context.Context, accountID uint64, event string) ([]repository.Webhook, error) {
	ctx, span := tracing.Start(ctx, "lookup")
	hooks, err := hd.webhooks.Webhooks(ctx, accountID, event)
	if span.IsRecording() {
		span.SetAttributes(tracing.KeyWebhooks.Int(len(hooks)))
	}
	tracing.End(span, err)
	return hooks, err
}

// tracedLoadJob is loadJob, the delivery, webhook and event of a retry, in a "lookup" span.
func (hd *Handler) tracedLoadJob(ctx context.Context, id string) (job, bool, error) {
	ctx, span := tracing.Start(ctx, "lookup")
	j, ok, err := hd.loadJob(ctx, id)
	if span.IsRecording() {
		span.SetAttributes(tracing.KeyDeliveryID.String(id), attribute.Bool("webhookd.delivery.due", ok))
	}
	tracing.End(span, err)
	return j, ok, err
}

// tracedAttempt is attemptIn in an "attempt" client span with the destination's host, the
// attempt's number and the status that came back. A status other than 2xx fails the span.
func (hd *Handler) tracedAttempt(ctx context.Context, j job, share *permit) (attemptResult, error) {
	ctx, span := tracing.Start(ctx, "attempt")
	if span.IsRecording() {
		span.SetAttributes(
			semconv.HTTPRequestMethodPost,
			tracing.KeyDeliveryID.String(j.deliveryID),
			tracing.KeyWebhookID.Int64(int64(j.webhook.ID)),
			tracing.KeyAttempt.Int(j.attempt),
		)
		// The URL itself may hold a secret in its path or query: only the host is kept.
		if u, err := url.Parse(j.webhook.URL); err == nil {
			span.SetAttributes(semconv.ServerAddress(u.Hostname()))
		}
	}
	res, err := hd.attemptIn(ctx, j, share)
	if span.IsRecording() {
		if res.StatusCode > 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
		}
		if err == nil && (res.StatusCode < 200 || res.StatusCode > 299) {
			span.SetStatus(codes.Error, fmt.Sprintf("status %d", res.StatusCode))
		}
	}
	tracing.End(span, err)
	return res, err
}

// tracedRecord is record, the outcome made durable, in a "record" span.
func (hd *Handler) tracedRecord(ctx context.Context, out repository.Outcome) (repository.Recorded, error) {
	ctx, span := tracing.Start(ctx, "record")
	if span.IsRecording() {
		span.SetAttributes(tracing.KeyDeliveryID.String(out.DeliveryID), tracing.KeyStatus.String(out.Status), tracing.KeyAttempt.Int(out.Attempt))
	}
	rec, err := hd.record(ctx, out)
	tracing.End(span, err)
	return rec, err
}

// tracedPark is park in a "park" span. The retry message carries this span's trace context
// (the worker's publisher adds it), so the next attempt continues the trace from here.
func (hd *Handler) tracedPark(ctx context.Context, j job, next retry.Decision) error {
	ctx, span := tracing.Start(ctx, "park")
	if span.IsRecording() {
		span.SetAttributes(
			tracing.KeyDeliveryID.String(j.deliveryID),
			tracing.KeyAttempt.Int(j.attempt+1),
			semconv.MessagingDestinationName(retry.QueueName(hd.cfg.Topology.Queue, next.Delay)),
			attribute.String("webhookd.retry.delay", next.Delay.String()),
		)
	}
	err := hd.park(ctx, j, next)
	tracing.End(span, err)
	return err
}

// tracedPostpone is postpone, a delivery put off without an attempt, in a "postpone" span.
func (hd *Handler) tracedPostpone(ctx context.Context, j job) error {
	ctx, span := tracing.Start(ctx, "postpone")
	if span.IsRecording() {
		span.SetAttributes(tracing.KeyDeliveryID.String(j.deliveryID), tracing.KeyAttempt.Int(j.attempt))
	}
	err := hd.postpone(ctx, j)
	tracing.End(span, err)
	return err
}
