package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/formatter"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/signer"
)

// deliver makes one attempt of a delivery and makes its outcome durable: recorded in the log
// and, after a failure with retries left, a retry message confirmed in a TTL queue. A nil
// error means the message that carried the job may be acked.
func (w *Worker) deliver(ctx context.Context, j job) (err error) {
	// Deliveries of one message run on their own goroutines: a panic must end here, as an
	// error that requeues the message, not take the process down.
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("delivery panic", "delivery_id", j.deliveryID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("delivery %s: panic: %v", j.deliveryID, p)
		}
	}()
	share, ok, err := w.shares.acquire(ctx, j.webhook.ID)
	if err != nil {
		return err
	}
	if !ok {
		return w.postpone(ctx, j)
	}
	if err := w.slots.Acquire(ctx, 1); err != nil {
		share.release()
		return err
	}
	res, err := w.attemptIn(ctx, j, share)
	if ctx.Err() != nil {
		// Cancelled by shutdown: the outcome is unknown, the message goes back.
		return ctx.Err()
	}

	out := repository.Outcome{
		DeliveryID:   j.deliveryID,
		EventID:      j.event.ID,
		WebhookID:    j.webhook.ID,
		Attempt:      j.attempt,
		StatusCode:   res.StatusCode,
		StartedAt:    res.started,
		Duration:     res.Duration,
		ResponseBody: res.Body,
	}
	if err != nil {
		out.Error = err.Error()
	}

	succeeded := err == nil && res.StatusCode >= 200 && res.StatusCode < 300
	var plan retry.Plan
	disable := ""
	switch {
	case succeeded:
		out.Status = repository.StatusSucceeded
	case res.StatusCode == http.StatusGone:
		out.Status = repository.StatusFailed
		out.Error = "410 Gone: webhook disabled"
		disable = "endpoint answered 410 Gone"
	case retry.IsPermanent(err) || errors.Is(err, sender.ErrInvalidURL) || errors.Is(err, sender.ErrDestinationRefused):
		out.Status = repository.StatusFailed
	default:
		var after time.Duration
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable {
			after = res.RetryAfter
		}
		plan = w.cfg.Topology.Ladder.Next(j.step, after)
		if plan.Final {
			out.Status = repository.StatusFailed
		} else {
			out.Status = repository.StatusPending
			// The retry is parked before the outcome is recorded: a pending delivery with
			// attempts always has its retry message waiting somewhere.
			if err := w.park(ctx, j, plan); err != nil {
				return err
			}
		}
	}
	if out.Error == "" && !succeeded {
		out.Error = "HTTP " + strconv.Itoa(res.StatusCode)
	}
	if disable != "" {
		// Disabled before the outcome is recorded: should the record fail, the delivery is
		// attempted again and finds its webhook disabled, rather than left enabled for good.
		if err := w.disable(ctx, j.webhook, disable); err != nil {
			return err
		}
	} else if out.Status == repository.StatusFailed {
		out.CountFailure = true
	}
	if err := w.record(ctx, out); err != nil {
		return err
	}

	switch out.Status {
	case repository.StatusSucceeded:
		metricDeliveries.WithLabelValues("succeeded").Inc()
		if w.log.Enabled(ctx, slog.LevelDebug) {
			w.jobLog(j).Debug("delivered", "status", res.StatusCode, "duration", res.Duration)
		}
	case repository.StatusPending:
		metricDeliveries.WithLabelValues("retried").Inc()
		w.jobLog(j).Info("attempt failed, retry parked", "status", res.StatusCode, "err", out.Error, "delay", plan.Delay)
	case repository.StatusFailed:
		metricDeliveries.WithLabelValues("failed").Inc()
		w.jobLog(j).Warn("delivery failed", "status", res.StatusCode, "err", out.Error)
		if disable == "" {
			return w.afterFailure(ctx, j.webhook)
		}
	}
	return nil
}

// jobLog is the worker's logger with the job's delivery, webhook, event and attempt. It is
// made only where a line is written: most deliveries succeed and log nothing.
func (w *Worker) jobLog(j job) *slog.Logger {
	return w.log.With("delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "event_id", j.event.ID, "attempt", j.attempt)
}

// attemptIn makes the attempt in a slot the caller has taken and a place of its webhook's
// share, and gives both back when it ends, a panic included: a slot or a place kept would
// shrink the pool for good, and the place's start, left behind, would make its webhook look
// slow for good.
func (w *Worker) attemptIn(ctx context.Context, j job, share *place) (attemptResult, error) {
	defer share.release()
	defer w.slots.Release(1)
	share.begin()
	metricInFlight.Inc()
	defer metricInFlight.Dec()
	return w.attempt(ctx, j)
}

type attemptResult struct {
	sender.Response
	started time.Time
}

// attempt renders, signs and posts one attempt.
func (w *Worker) attempt(ctx context.Context, j job) (attemptResult, error) {
	started := w.now()
	res := attemptResult{started: started}
	format, err := formatter.ParseFormat(j.webhook.Format)
	if err != nil {
		return res, retry.Permanent(err)
	}
	body, err := formatter.Render(format, render(j.event))
	if err != nil {
		return res, retry.Permanent(err)
	}
	h := make(http.Header, 10)
	h.Set("Content-Type", format.ContentType())
	h.Set("User-Agent", "webhookd/"+w.cfg.Version)
	h.Set("X-Webhook-Event", j.event.Name)
	h.Set("X-Webhook-Delivery", j.deliveryID)
	h.Set("X-Webhook-Attempt", strconv.Itoa(j.attempt))
	h.Set("X-Webhook-Signature", signer.Signature(j.webhook.Token, body))
	ts := started.Unix()
	h.Set("webhook-id", j.deliveryID)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", signer.StandardSignature(j.webhook.Token, j.deliveryID, ts, body))
	resp, err := w.send.Send(ctx, sender.Request{URL: j.webhook.URL, Header: h, Body: body})
	res.Response = resp
	metricAttemptSeconds.Observe(resp.Duration.Seconds())
	return res, err
}

// park publishes the retry message of a failed attempt to the TTL queue of its delay and
// waits for the broker's confirm. It carries no x-death: the attempt travels in our headers.
func (w *Worker) park(ctx context.Context, j job, plan retry.Plan) error {
	if err := w.publishRetry(ctx, j.deliveryID, plan.Delay, j.attempt+1, plan.Step); err != nil {
		return fmt.Errorf("park retry: %w", err)
	}
	metricRetries.WithLabelValues(plan.Delay.String()).Inc()
	return nil
}

// publishRetry puts a retry message for a delivery in the TTL queue of delay: the attempt it
// will make and the ladder step it is on travel in webhookd's headers. It returns once the
// broker has confirmed the message, persistent and routed.
func (w *Worker) publishRetry(ctx context.Context, deliveryID string, delay time.Duration, attempt, step int) error {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return w.pub.Publish(pctx, Publishing{
		Key:       retry.QueueName(w.cfg.Topology.Queue, delay),
		Mandatory: true,
		Msg: amqp.Publishing{
			Headers: amqp.Table{
				HeaderDelivery: deliveryID,
				HeaderAttempt:  int32(attempt),
				HeaderStep:     int32(step),
			},
			Type:         TypeRetry,
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
		},
	})
}

// record makes an outcome durable, retrying while the database is briefly away: the POST has
// been made, and giving up would make the receiver get it again.
func (w *Worker) record(ctx context.Context, out repository.Outcome) error {
	bo := newBackoff()
	for {
		err := w.store.Record(ctx, out)
		if err == nil {
			return nil
		}
		w.dbFailed(err)
		out.Again = true
		d := bo.next()
		w.log.Warn("record outcome failed, retrying", "delivery_id", out.DeliveryID, "err", err, "in", d)
		if !sleepCtx(ctx, d) {
			return db(fmt.Errorf("record outcome: %w", err))
		}
	}
}
