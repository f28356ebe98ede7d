package delivery

import (
	"context"
	"fmt"

	"github.com/webhookd/webhookd/repository"
)

// afterFailure disables a webhook once its failed deliveries in a row, n, counted in the same
// transaction that recorded the failure, reach DisableAfter.
func (hd *Handler) afterFailure(ctx context.Context, h repository.Webhook, n int) error {
	if hd.cfg.DisableAfter == 0 || n < hd.cfg.DisableAfter {
		return nil
	}
	return hd.disable(ctx, h, fmt.Sprintf("%d failed deliveries in a row", n))
}

// disable turns the webhook off and announces it on the notification exchange. The database
// keeps the announcement pending until the broker confirms it, so that a failed publish or a
// crash only delays it (see notifyPending).
func (hd *Handler) disable(ctx context.Context, h repository.Webhook, reason string) error {
	changed, err := hd.store.Disable(ctx, h.ID, reason)
	if err != nil {
		return repository.Unavailable(err)
	}
	if !changed {
		return nil
	}
	hd.webhooks.Invalidate(h.AccountID, h.Event)
	metricDisabled.Inc()
	hd.log.Warn("webhook disabled", "webhook_id", h.ID, "account_id", h.AccountID, "url", h.URL, "reason", reason)
	n := repository.Notification{WebhookID: h.ID, AccountID: h.AccountID, URL: h.URL, Reason: reason, At: hd.now()}
	if err := hd.notify(ctx, n); err != nil {
		hd.log.Warn("webhook.disabled notification not published yet; will retry", "webhook_id", h.ID, "err", err)
	}
	return nil
}
