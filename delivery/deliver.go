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
	if ok, err := hd.inTurn(ctx, &j); !ok || err != nil {
		return err
	}
	// deferred marks a delivery held or postponed rather than attempted: no outcome is
	// durable, and a copy waiting behind it here (its held copy, back before the hold's row
	// was written) must go on, not be dropped as done.
	var deferred bool
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
		defer func() { leave(err == nil && !deferred) }()
	}
	// Deliveries of one message run on their own goroutines: a panic must end here, as an
	// error that requeues the message, not take the process down.
	defer func() {
		if p := recover(); p != nil {
			hd.log.Error("delivery panic", "delivery_id", j.deliveryID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("delivery %s: panic: %v", j.deliveryID, p)
		}
	}()
	// The admission policy first (admit.go), then the webhook's share and a worker slot.
	share, done, held, err := hd.take(ctx, &j)
	if done || err != nil {
		deferred = held
		return err
	}
	res, err := hd.tracedAttempt(ctx, j, share)
	if ctx.Err() != nil {
		// Cancelled by shutdown: the outcome is unknown, the message goes back.
		return ctx.Err()
	}
	outcome := retry.Outcome{Status: res.StatusCode, Err: err, Step: j.step}
	if res.RetryAfter > 0 {
		outcome.RetryAfter = res.started.Add(res.Duration + res.RetryAfter)
	}
	next := retry.Decide(outcome, hd.cfg.Topology.Ladder, res.started.Add(res.Duration))
	if a, aside := hd.setAside(j, res, err); aside {
		// The worker's own outage, not the receiver's failure: no attempt is used or counted.
		deferred = true
		return hd.hold(ctx, j, a)
	}
	return hd.settleAttempt(ctx, j, res, next, err)
}

// setAside feeds the outage detector an attempt's outcome and says whether the attempt is to
// be set aside, held as if it had not been made: it failed at the connection level while the
// worker is, or may be, in its own network outage (outage.go).
func (hd *Handler) setAside(j job, res attemptResult, err error) (admission, bool) {
	if res.StatusCode > 0 {
		hd.outage.answer()
		return admission{}, false
	}
	if !connectionFailure(res.StatusCode, err) {
		return admission{}, false
	}
	aside, began := hd.outage.fail(hostOf(j.webhook.URL))
	if began {
		hd.log.Error("outage: destinations fail at the connection level and none answers; consumption paused",
			"hosts", hd.cfg.OutageHosts, "window", hd.cfg.OutageWindow)
	}
	if !aside {
		return admission{}, false
	}
	return admission{verdict: admitHold, until: hd.now().Add(hd.cfg.OutageWindow / 2), reason: heldOutage}, true
}

// settleAttempt carries out what retry.Decide said of an attempt: the retry parked first, then
// the webhook disabled, then the outcome recorded, then the failures counted.
func (hd *Handler) settleAttempt(ctx context.Context, j job, res attemptResult, next retry.Decision, attemptErr error) error {
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
	if j.probe && (next.Verdict == retry.Retry || next.Verdict == retry.Failed) {
		return hd.probeFailed(ctx, j, out, next, attemptErr)
	}
	switch next.Verdict {
	case retry.Succeeded:
		out.Status = repository.StatusSucceeded
	case retry.Retry:
		out.Status = repository.StatusPending
		out.Due = res.started.Add(res.Duration + next.Delay)
		// The retry is parked before the outcome is recorded: a pending delivery with
		// attempts always has its retry message waiting somewhere.
		if err := hd.tracedPark(ctx, j, next); err != nil {
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
	hd.protectOutcome(&out, j, next, attemptErr)
	rec, err := hd.tracedRecord(ctx, out)
	if err != nil {
		return err
	}
	hd.afterAttempt(ctx, j, next, rec)
	if next.Verdict != retry.Retry {
		hd.settledInTurn(ctx, j)
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
