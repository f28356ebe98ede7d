package delivery

import (
	"context"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
)

// notifyEvery is how often notifications that could not be published are tried again.
const notifyEvery = 30 * time.Second

// notify publishes one webhook.disabled notification and marks it sent.
func (hd *Handler) notify(ctx context.Context, n repository.Notification) error {
	msg := broker.Notification{WebhookID: n.WebhookID, AccountID: n.AccountID, URL: n.URL, Reason: n.Reason, At: n.At}
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	err := hd.pub.Publish(pctx, broker.Publishing{
		Exchange: broker.NotificationExchange,
		Key:      broker.NotificationDisabled,
		Msg:      msg.Publishing(hd.now()),
	})
	if err != nil {
		return err
	}
	return hd.store.Notified(ctx, n.WebhookID)
}

// RunOutbox publishes, every notifyEvery until ctx ends, the notifications whose publish
// failed or was cut short by a crash. The database keeps each one pending until the broker has
// confirmed it.
func (hd *Handler) RunOutbox(ctx context.Context) {
	t := time.NewTicker(notifyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hd.flushNotices(ctx) // the breakers' (breaker.go)
		pending, err := hd.store.PendingNotifications(ctx)
		if err != nil {
			continue
		}
		for _, n := range pending {
			if err := hd.notify(ctx, n); err != nil {
				hd.log.Warn("webhook.disabled notification not published yet; will retry", "webhook_id", n.WebhookID, "err", err)
				break
			}
		}
	}
}
