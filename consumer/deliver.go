package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
func (w *Worker) deliver(ctx context.Context, j job) error {
	if err := w.slots.Acquire(ctx, 1); err != nil {
		return err
	}
	metricInFlight.Inc()
	res, err := w.attempt(ctx, j)
	metricInFlight.Dec()
	w.slots.Release(1)
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
	log := w.log.With("delivery_id", j.deliveryID, "webhook_id", j.webhook.ID, "event_id", j.event.ID, "attempt", j.attempt)

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
	if err := w.record(ctx, out); err != nil {
		return err
	}

	switch out.Status {
	case repository.StatusSucceeded:
		metricDeliveries.WithLabelValues("succeeded").Inc()
		log.Debug("delivered", "status", res.StatusCode, "duration", res.Duration)
	case repository.StatusPending:
		metricDeliveries.WithLabelValues("retried").Inc()
		log.Info("attempt failed, retry parked", "status", res.StatusCode, "err", out.Error, "delay", plan.Delay)
	case repository.StatusFailed:
		metricDeliveries.WithLabelValues("failed").Inc()
		log.Warn("delivery failed", "status", res.StatusCode, "err", out.Error)
		return w.afterFailure(ctx, j.webhook, disable)
	}
	return nil
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
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err := w.pub.Publish(pctx, Publishing{
		Key:       retry.QueueName(w.cfg.Topology.Queue, plan.Delay),
		Mandatory: true,
		Msg: amqp.Publishing{
			Headers: amqp.Table{
				HeaderDelivery: j.deliveryID,
				HeaderAttempt:  int32(j.attempt + 1),
				HeaderStep:     int32(plan.Step),
			},
			Type:         TypeRetry,
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
		},
	})
	if err != nil {
		return fmt.Errorf("park retry: %w", err)
	}
	metricRetries.WithLabelValues(plan.Delay.String()).Inc()
	return nil
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
		d := bo.next()
		w.log.Warn("record outcome failed, retrying", "delivery_id", out.DeliveryID, "err", err, "in", d)
		if !sleepCtx(ctx, d) {
			return db(fmt.Errorf("record outcome: %w", err))
		}
	}
}

// afterFailure counts a failed delivery against its webhook and disables the webhook after
// DisableAfter in a row, or at once with reason when the endpoint said 410 Gone.
func (w *Worker) afterFailure(ctx context.Context, h repository.Webhook, reason string) error {
	if reason == "" {
		n, err := w.store.CountFailure(ctx, h.ID)
		if errors.Is(err, repository.ErrNotFound) {
			return nil
		}
		if err != nil {
			return db(err)
		}
		if w.cfg.DisableAfter == 0 || n < w.cfg.DisableAfter {
			return nil
		}
		reason = fmt.Sprintf("%d failed deliveries in a row", n)
	}
	changed, err := w.store.Disable(ctx, h.ID, reason)
	if err != nil || !changed {
		return db(err)
	}
	if inv, ok := w.webhooks.(interface{ Invalidate(uint64, string) }); ok {
		inv.Invalidate(h.AccountID, h.Event)
	}
	metricDisabled.Inc()
	w.log.Warn("webhook disabled", "webhook_id", h.ID, "account_id", h.AccountID, "url", h.URL, "reason", reason)
	body, _ := json.Marshal(map[string]any{
		"webhookId": h.ID,
		"accountId": h.AccountID,
		"url":       h.URL,
		"reason":    reason,
		"at":        w.now().UTC().Format(time.RFC3339),
	})
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	return w.pub.Publish(pctx, Publishing{
		Exchange: NotificationExchange,
		Key:      "webhook.disabled",
		Msg: amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
			Body:         body,
		},
	})
}
