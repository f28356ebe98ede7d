package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/repository"
)

// notifyEvery is how often notifications that could not be published are tried again.
const notifyEvery = 30 * time.Second

// afterFailure disables a webhook once its failed deliveries in a row reach DisableAfter. The
// failure itself was counted in the same transaction that recorded it.
func (w *Worker) afterFailure(ctx context.Context, h repository.Webhook) error {
	if w.cfg.DisableAfter == 0 {
		return nil
	}
	n, err := w.store.Failures(ctx, h.ID)
	if errors.Is(err, repository.ErrNotFound) {
		return nil
	}
	if err != nil {
		return db(err)
	}
	if n < w.cfg.DisableAfter {
		return nil
	}
	return w.disable(ctx, h, fmt.Sprintf("%d failed deliveries in a row", n))
}

// disable turns the webhook off and announces it on the notification exchange. The database
// keeps the announcement pending until the broker confirms it, so that a failed publish or a
// crash only delays it (see notifyPending).
func (w *Worker) disable(ctx context.Context, h repository.Webhook, reason string) error {
	changed, err := w.store.Disable(ctx, h.ID, reason)
	if err != nil {
		return db(err)
	}
	if !changed {
		return nil
	}
	if inv, ok := w.webhooks.(interface{ Invalidate(uint64, string) }); ok {
		inv.Invalidate(h.AccountID, h.Event)
	}
	metricDisabled.Inc()
	w.log.Warn("webhook disabled", "webhook_id", h.ID, "account_id", h.AccountID, "url", h.URL, "reason", reason)
	n := repository.Notification{WebhookID: h.ID, AccountID: h.AccountID, URL: h.URL, Reason: reason, At: w.now()}
	if err := w.notify(ctx, n); err != nil {
		w.log.Warn("webhook.disabled notification not published yet; will retry", "webhook_id", h.ID, "err", err)
	}
	return nil
}

// notify publishes one webhook.disabled notification and marks it sent.
func (w *Worker) notify(ctx context.Context, n repository.Notification) error {
	body, err := json.Marshal(map[string]any{
		"webhookId": n.WebhookID,
		"accountId": n.AccountID,
		"url":       n.URL,
		"reason":    n.Reason,
		"at":        n.At.UTC().Format(time.RFC3339),
	})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err = w.pub.Publish(pctx, Publishing{
		Exchange: NotificationExchange,
		Key:      "webhook.disabled",
		Msg: amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
			Body:         body,
		},
	})
	if err != nil {
		return err
	}
	return w.store.Notified(ctx, n.WebhookID)
}

// notifyPending publishes, every notifyEvery until ctx ends, the notifications whose publish
// failed or was cut short by a crash.
func (w *Worker) notifyPending(ctx context.Context) {
	t := time.NewTicker(notifyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pending, err := w.store.PendingNotifications(ctx)
		if err != nil {
			continue
		}
		for _, n := range pending {
			if err := w.notify(ctx, n); err != nil {
				w.log.Warn("webhook.disabled notification not published yet; will retry", "webhook_id", n.WebhookID, "err", err)
				break
			}
		}
	}
}
