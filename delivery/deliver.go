package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/backoff"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// deliver makes one attempt of a delivery and makes its outcome durable: recorded in the log
// and, after a failure with retries left, a retry message confirmed in a TTL queue. A nil
// error means the message that carried the job may be acked.
func (hd *Handler) deliver(ctx context.Context, j job) (err error) {
	if !j.redelivery {
		// A redelivery is asked for whatever else is under way; anything else already in
		// flight here is the same attempt, come back with its message after a lost channel.
		var leave func(durable bool)
		var settled bool
		leave, settled, err = hd.inflight.enter(ctx, j.deliveryID, j.attempt)
		if err != nil || settled {
			if settled {
				metricDuplicatesAvoided.Inc()
			}
			return err
		}
		// Deferred before the recovery below, so that it sees a panic as an error.
		defer func() { leave(err == nil) }()
	}
	// Deliveries of one message run on their own goroutines: a panic must end here, as an
	// error that requeues the message, not take the process down.
	defer func() {
		if p := recover(); p != nil {
			hd.log.Error("delivery panic", "delivery_id", j.deliveryID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("delivery %s: panic: %v", j.deliveryID, p)
		}
	}()
	share, ok, err := hd.shares.acquire(ctx, j.webhook.ID)
	if err != nil {
		return err
	}
	if !ok {
		return hd.postpone(ctx, j)
	}
	if err := hd.slots.Acquire(ctx, 1); err != nil {
		share.release()
		return err
	}
	res, err := hd.attemptIn(ctx, j, share)
	if ctx.Err() != nil {
		// Cancelled by shutdown: the outcome is unknown, the message goes back.
		return ctx.Err()
	}
	outcome := retry.Outcome{Status: res.StatusCode, Err: err, Step: j.step}
	if res.RetryAfter > 0 {
		outcome.RetryAfter = res.started.Add(res.Duration + res.RetryAfter)
	}
	next := retry.Decide(outcome, hd.cfg.Topology.Ladder, res.started.Add(res.Duration))
	return hd.settleAttempt(ctx, j, res, next)
}

// settleAttempt carries out what retry.Decide said of an attempt: the retry parked first, then
// the webhook disabled, then the outcome recorded, then the failures counted.
func (hd *Handler) settleAttempt(ctx context.Context, j job, res attemptResult, next retry.Decision) error {
	out := repository.Outcome{
		DeliveryID:   j.deliveryID,
		EventID:      j.event.ID,
		WebhookID:    j.webhook.ID,
		Attempt:      j.attempt,
		StatusCode:   res.StatusCode,
		StartedAt:    res.started,
		Duration:     res.Duration,
		ResponseBody: res.Body,
		Error:        next.Reason,
	}
	switch next.Verdict {
	case retry.Succeeded:
		out.Status = repository.StatusSucceeded
	case retry.Retry:
		out.Status = repository.StatusPending
		out.Due = res.started.Add(res.Duration + next.Delay)
		// The retry is parked before the outcome is recorded: a pending delivery with
		// attempts always has its retry message waiting somewhere.
		if err := hd.park(ctx, j, next); err != nil {
			return err
		}
	case retry.Disable:
		out.Status = repository.StatusFailed
		// Disabled before the outcome is recorded: should the record fail, the delivery is
		// attempted again and finds its webhook disabled, rather than left enabled for good.
		if err := hd.disable(ctx, j.webhook, "endpoint answered 410 Gone"); err != nil {
			return err
		}
	case retry.Failed:
		out.Status = repository.StatusFailed
		out.CountFailure = true
	}
	rec, err := hd.record(ctx, out)
	if err != nil {
		return err
	}

	switch next.Verdict {
	case retry.Succeeded:
		metricDeliveries.WithLabelValues("succeeded").Inc()
		if hd.log.Enabled(ctx, slog.LevelDebug) {
			hd.jobLog(j).Debug("delivered", "status", res.StatusCode, "duration", res.Duration)
		}
	case retry.Retry:
		metricDeliveries.WithLabelValues("retried").Inc()
		hd.jobLog(j).Info("attempt failed, retry parked", "status", res.StatusCode, "err", out.Error, "delay", next.Delay)
	case retry.Disable:
		metricDeliveries.WithLabelValues("failed").Inc()
		hd.jobLog(j).Warn("delivery failed", "status", res.StatusCode, "err", out.Error)
	case retry.Failed:
		metricDeliveries.WithLabelValues("failed").Inc()
		hd.jobLog(j).Warn("delivery failed", "status", res.StatusCode, "err", out.Error)
		return hd.afterFailure(ctx, j.webhook, rec.FailuresInARow)
	}
	return nil
}

// jobLog is the handler's logger with the job's delivery, webhook, event and attempt. It is
// made only where a line is written: most deliveries succeed and log nothing.
func (hd *Handler) jobLog(j job) *slog.Logger {
	return hd.log.With("delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "event_id", j.event.ID, "attempt", j.attempt)
}

// park publishes the retry message of a failed attempt to the TTL queue of its delay and
// waits for the broker's confirm. It carries no x-death: the attempt travels in our headers.
func (hd *Handler) park(ctx context.Context, j job, next retry.Decision) error {
	r := broker.Retry{DeliveryID: j.deliveryID, Attempt: j.attempt + 1, Step: next.Step}
	if err := hd.publishRetry(ctx, r.Publishing(hd.now()), next.Delay); err != nil {
		return fmt.Errorf("park retry: %w", err)
	}
	metricRetries.WithLabelValues(next.Delay.String()).Inc()
	return nil
}

// publishRetry puts the retry message msg in the TTL queue of delay and returns once the broker
// has confirmed it, persistent and routed.
func (hd *Handler) publishRetry(ctx context.Context, msg amqp.Publishing, delay time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	return hd.pub.Publish(pctx, broker.Publishing{
		Key:       retry.QueueName(hd.cfg.Topology.Queue, delay),
		Mandatory: true,
		Msg:       msg,
	})
}

// record makes an outcome durable, retrying while the database is briefly away: the POST has
// been made, and giving up would make the receiver get it again.
func (hd *Handler) record(ctx context.Context, out repository.Outcome) (repository.Recorded, error) {
	bo := backoff.New()
	for {
		rec, err := hd.store.Record(ctx, out)
		if err = repository.Unavailable(err); err == nil {
			return rec, nil
		}
		hd.cfg.DBFailed(err)
		out.Again = true
		d := bo.Next()
		hd.log.Warn("record outcome failed, retrying", "delivery_id", out.DeliveryID, "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return repository.Recorded{}, fmt.Errorf("record outcome: %w", err)
		}
	}
}
