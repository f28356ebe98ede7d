package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// Breakers keeps the circuit breakers' rows, shared by every worker.
type Breakers interface {
	// OpenBreaker opens a webhook's breaker unless it is open, storing the notice with it.
	OpenBreaker(ctx context.Context, n repository.Notice, probeAt time.Time) (repository.Notice, bool, error)
	// CloseBreaker closes a webhook's breaker if it is open, storing the notice with it.
	CloseBreaker(ctx context.Context, n repository.Notice) (repository.Notice, bool, error)
	// ClaimProbe takes a webhook's probe if it is due and moves the next one every ahead.
	ClaimProbe(ctx context.Context, id uint64, every time.Duration) (bool, error)
	// DisableOpen disables a webhook whose breaker stayed open for the whole hold.
	DisableOpen(ctx context.Context, id uint64, reason string) (bool, error)
	// ReleaseHeld makes a webhook's held deliveries due now, the oldest first.
	ReleaseHeld(ctx context.Context, id uint64, now time.Time, limit int) ([]repository.Delivery, error)
}

// Notices is the outbox of the breakers' notifications.
type Notices interface {
	PendingNotices(ctx context.Context) ([]repository.Notice, error)
	NoticeSent(ctx context.Context, id uint64) error
}

// protectOutcome adds to an attempt's outcome what protects the receivers, recorded in the
// same transaction: a failed attempt counts toward the breaker (one that no retry can fix,
// a refused destination or an invalid URL, does not), and a Retry-After pauses the webhook,
// here at once and in every other worker within guardsEvery.
//
// The failures are also counted here, in memory: once this worker alone has seen BreakerAfter
// in a row, the breaker is taken as open at once, before their records are committed and the
// database's count opens it, so that the attempts already under way are all that reach the
// endpoint meanwhile (with 128 slots and an endpoint that fails at once, 510 requests of a
// backlog of 20,000 got through while only the database's count opened it).
func (hd *Handler) protectOutcome(out *repository.Outcome, j job, next retry.Decision, attemptErr error) {
	switch next.Verdict {
	case retry.Retry, retry.Failed:
		out.CountAttempt = hd.cfg.BreakerAfter > 0 && !retry.IsPermanent(attemptErr)
	case retry.Succeeded:
		hd.streaks.succeeded(j.webhook.ID)
	}
	if out.CountAttempt && hd.streaks.failed(j.webhook.ID) >= hd.cfg.BreakerAfter {
		if _, known := hd.guards.load().breakers[j.webhook.ID]; !known {
			now := hd.now()
			hd.guards.open(j.webhook.ID, breakerState{openedAt: now, probeAt: now.Add(hd.cfg.BreakerProbe)}, now)
		}
	}
	if !next.Pause.IsZero() {
		out.PauseUntil = next.Pause
		hd.guards.pause(j.webhook.ID, next.Pause, hd.now())
		hd.jobLog(j).Info("webhook paused by Retry-After", "until", next.Pause)
	}
}

// streaks counts each webhook's failed attempts in a row in this worker. A success costs an
// atomic load while no webhook has a streak.
type streaks struct {
	n  atomic.Int32 // webhooks with a streak
	mu sync.Mutex
	m  map[uint64]int
}

func (s *streaks) failed(id uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[uint64]int{}
	}
	if s.m[id] == 0 {
		s.n.Add(1)
	}
	s.m[id]++
	return s.m[id]
}

func (s *streaks) succeeded(id uint64) {
	if s.n.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		delete(s.m, id)
		s.n.Add(-1)
	}
}

// afterAttempt opens or closes the webhook's breaker once the attempt's outcome is recorded:
// a success closes an open one, and the failed attempt that makes BreakerAfter in a row, of
// all the workers' together, opens it. A failure of the breaker's own rows is logged, not
// returned: the outcome is durable, and the next attempt looks again.
func (hd *Handler) afterAttempt(ctx context.Context, j job, next retry.Decision, rec repository.Recorded) {
	h := j.webhook
	_, known := hd.guards.load().breakers[h.ID]
	switch {
	case next.Verdict == retry.Succeeded && (known || j.probe):
		hd.closeBreaker(ctx, h)
	case rec.BreakerOpen:
		if !known {
			// Opened by another worker: seen here before the next read of the breakers.
			now := hd.now()
			hd.guards.open(h.ID, breakerState{openedAt: now, probeAt: now.Add(hd.cfg.BreakerProbe)}, now)
		}
	case hd.cfg.BreakerAfter > 0 && rec.AttemptFailures >= hd.cfg.BreakerAfter:
		hd.openBreaker(ctx, h, rec.AttemptFailures)
	}
}

// probeFailed settles a failed probe: the breaker stays open, and the delivery, which has used
// one attempt but no step of its ladder, goes back to waiting behind it (contract §8: held
// deliveries fail only after the hold). Its hold is published before the attempt is recorded,
// as a retry is parked first.
func (hd *Handler) probeFailed(ctx context.Context, j job, out repository.Outcome, next retry.Decision, attemptErr error) error {
	now := hd.now()
	since := j.circuitSince
	if since.IsZero() {
		since = now
	}
	delay := holdDelay(hd.policy.circuitHold(since, now).until.Sub(now))
	back := now.Add(delay).Truncate(time.Microsecond)
	p := &broker.Postponed{
		Delivery: j.deliveryID, Event: j.event.ID, Webhook: j.webhook.ID,
		Attempt: j.attempt + 1, Step: j.step, Redelivery: j.redelivery,
		Due: back.UnixMicro(), CircuitSince: since.UnixMilli(),
	}
	if err := hd.holds[delay].Do(ctx, p); err != nil {
		return fmt.Errorf("hold after a failed probe: %w", err)
	}
	out.Status, out.Due = repository.StatusPending, back
	hd.protectOutcome(&out, j, next, attemptErr)
	rec, err := hd.tracedRecord(ctx, out)
	if err != nil {
		return err
	}
	hd.afterAttempt(ctx, j, next, rec)
	metricDeliveries.WithLabelValues("retried").Inc()
	metricHeld.WithLabelValues(string(heldCircuit)).Inc()
	hd.jobLog(j).Info("probe failed: breaker stays open, delivery held again", "status", out.StatusCode, "err", out.Error, "back_in", delay)
	return nil
}

// openBreaker opens h's breaker after n failed attempts in a row. The worker whose insert
// opened it announces it, through the outbox.
func (hd *Handler) openBreaker(ctx context.Context, h repository.Webhook, n int) {
	now := hd.now()
	hd.guards.open(h.ID, breakerState{openedAt: now, probeAt: now.Add(hd.cfg.BreakerProbe)}, now)
	notice := repository.Notice{RoutingKey: broker.NotificationCircuitOpened, WebhookID: h.ID, AccountID: h.AccountID,
		URL: h.URL, Reason: fmt.Sprintf("%d failed attempts in a row", n), At: now}
	notice, opened, err := hd.store.OpenBreaker(ctx, notice, now.Add(hd.cfg.BreakerProbe))
	if err != nil {
		hd.log.Warn("breaker not opened; the next failed attempt tries again", "webhook_id", h.ID, "err", err)
		return
	}
	if !opened {
		return
	}
	metricBreakerChanges.WithLabelValues("opened").Inc()
	hd.log.Warn("breaker opened: deliveries held, one probe every interval", "webhook_id", h.ID, "account_id", h.AccountID,
		"url", h.URL, "failed_attempts", n, "probe_every", hd.cfg.BreakerProbe, "hold", hd.cfg.BreakerHold)
	hd.publishNotice(ctx, notice)
}

// closeBreaker closes h's breaker after a successful attempt. The worker whose delete closed
// it announces it and lets the deliveries held behind it go.
func (hd *Handler) closeBreaker(ctx context.Context, h repository.Webhook) {
	hd.guards.close(h.ID, hd.now())
	notice := repository.Notice{RoutingKey: broker.NotificationCircuitClosed, WebhookID: h.ID, AccountID: h.AccountID,
		URL: h.URL, Reason: "probe succeeded", At: hd.now()}
	notice, closed, err := hd.store.CloseBreaker(ctx, notice)
	if err != nil {
		hd.log.Warn("breaker not closed; the next successful attempt tries again", "webhook_id", h.ID, "err", err)
		return
	}
	if !closed {
		return
	}
	metricBreakerChanges.WithLabelValues("closed").Inc()
	hd.log.Info("breaker closed: held deliveries go out", "webhook_id", h.ID, "account_id", h.AccountID)
	hd.publishNotice(ctx, notice)
	select {
	case hd.releases <- h.ID:
	default:
		// RunGuards is busy releasing others: these come back on their own.
	}
}

// disableOpen disables j's webhook, whose breaker has stayed open for the whole hold, as
// DISABLE_AFTER would (contract §8), and fails j.
func (hd *Handler) disableOpen(ctx context.Context, j job) error {
	h := j.webhook
	reason := fmt.Sprintf("circuit open for %s", hd.cfg.BreakerHold)
	changed, err := hd.store.DisableOpen(ctx, h.ID, reason)
	if err != nil {
		return err
	}
	hd.guards.close(h.ID, hd.now())
	if changed {
		hd.webhooks.Invalidate(h.AccountID, h.Event)
		metricDisabled.Inc()
		hd.log.Warn("webhook disabled", "webhook_id", h.ID, "account_id", h.AccountID, "url", h.URL, "reason", reason)
		n := repository.Notification{WebhookID: h.ID, AccountID: h.AccountID, URL: h.URL, Reason: reason, At: hd.now()}
		if err := hd.notify(ctx, n); err != nil {
			hd.log.Warn("webhook.disabled notification not published yet; will retry", "webhook_id", h.ID, "err", err)
		}
	}
	return hd.failHeld(ctx, j, reasonCircuitOpen)
}

// publishNotice publishes a breaker's notification and removes it from the outbox; one that
// fails stays there for RunOutbox.
func (hd *Handler) publishNotice(ctx context.Context, n repository.Notice) {
	if err := hd.sendNotice(ctx, n); err != nil {
		hd.log.Warn(n.RoutingKey+" notification not published yet; will retry", "webhook_id", n.WebhookID, "err", err)
	}
}

func (hd *Handler) sendNotice(ctx context.Context, n repository.Notice) error {
	msg := broker.Notification{WebhookID: n.WebhookID, AccountID: n.AccountID, URL: n.URL, Reason: n.Reason, At: n.At}
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	err := hd.pub.Publish(pctx, broker.Publishing{Exchange: broker.NotificationExchange, Key: n.RoutingKey, Msg: msg.Publishing(hd.now())})
	if err != nil {
		return err
	}
	return hd.store.NoticeSent(ctx, n.ID)
}

// flushNotices publishes the outbox's notices whose publish failed or was cut short.
func (hd *Handler) flushNotices(ctx context.Context) {
	pending, err := hd.store.PendingNotices(ctx)
	if err != nil {
		return
	}
	for _, n := range pending {
		if err := hd.sendNotice(ctx, n); err != nil {
			hd.log.Warn(n.RoutingKey+" notification not published yet; will retry", "webhook_id", n.WebhookID, "err", err)
			return
		}
	}
}
