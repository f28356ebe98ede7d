package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Webhook is one subscription row.
type Webhook struct {
	ID        uint64        `db:"id"`
	AccountID uint64        `db:"account_id"`
	ProjectID sql.NullInt64 `db:"project_id"`
	Event     string        `db:"event"`
	URL       string        `db:"url"`
	Format    string        `db:"format"`
	Token     string        `db:"token"`
	Enabled   bool          `db:"enabled"`
	// RateLimit is the most attempts a second the webhook takes, across every worker;
	// NULL: no limit (contract §8).
	RateLimit sql.NullInt64 `db:"rate_limit"`
	// Ordered webhooks get each object's events one at a time, in publish order (contract §9).
	Ordered bool `db:"ordered"`
}

// Matches reports whether the webhook wants an event of project projectID (nil: account-wide).
// A webhook without a project gets every event; one with a project only that project's.
func (w Webhook) Matches(projectID *uint64) bool {
	if !w.Enabled {
		return false
	}
	if !w.ProjectID.Valid {
		return true
	}
	return projectID != nil && uint64(w.ProjectID.Int64) == *projectID
}

// String names the webhook without its token, which must never reach a log.
func (w Webhook) String() string {
	return fmt.Sprintf("webhook %d (%s)", w.ID, w.URL)
}

const webhookColumns = "id, account_id, project_id, event, url, format, token, enabled, rate_limit, ordered"

// Webhooks returns the enabled webhooks of an account subscribed to event, in id order.
func (s *Store) Webhooks(ctx context.Context, accountID uint64, event string) ([]Webhook, error) {
	var hooks []Webhook
	err := s.db.SelectContext(ctx, &hooks,
		"SELECT "+webhookColumns+" FROM webhooks WHERE account_id = ? AND event = ? AND enabled = 1 ORDER BY id",
		accountID, event)
	if err != nil {
		return nil, fmt.Errorf("select webhooks: %w", err)
	}
	return hooks, nil
}

// Webhook returns the webhook with id, enabled or not, or ErrNotFound.
func (s *Store) Webhook(ctx context.Context, id uint64) (Webhook, error) {
	var w Webhook
	err := s.db.GetContext(ctx, &w, "SELECT "+webhookColumns+" FROM webhooks WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, fmt.Errorf("webhook %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("select webhook %d: %w", id, err)
	}
	return w, nil
}

// Disable turns webhook id off with a reason, resets its failures in a row, of deliveries and
// of attempts (so that re-enabling it starts afresh), and marks its announcement pending. It reports whether the
// webhook was on until now, so that exactly one caller announces it.
func (s *Store) Disable(ctx context.Context, id uint64, reason string) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		"UPDATE webhooks SET enabled = 0, disabled_reason = ?, consecutive_failures = 0, attempt_failures = 0, notify_pending = 1 WHERE id = ? AND enabled = 1", truncate(reason, 255), id)
	if err != nil {
		return false, fmt.Errorf("disable webhook %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("disable webhook %d: %w", id, err)
	}
	return n == 1, nil
}

// Notification is a webhook.disabled announcement.
type Notification struct {
	WebhookID uint64    `db:"id"`
	AccountID uint64    `db:"account_id"`
	URL       string    `db:"url"`
	Reason    string    `db:"disabled_reason"`
	At        time.Time `db:"updated_at"`
}

// PendingNotifications returns the disabled webhooks whose announcement is not confirmed yet.
func (s *Store) PendingNotifications(ctx context.Context) ([]Notification, error) {
	var ns []Notification
	err := s.db.SelectContext(ctx, &ns,
		"SELECT id, account_id, url, COALESCE(disabled_reason, '') AS disabled_reason, updated_at FROM webhooks WHERE notify_pending = 1 ORDER BY id LIMIT 100")
	if err != nil {
		return nil, fmt.Errorf("select pending notifications: %w", err)
	}
	return ns, nil
}

// Notified marks the webhook's announcement as published.
func (s *Store) Notified(ctx context.Context, id uint64) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE webhooks SET notify_pending = 0 WHERE id = ?", id); err != nil {
		return fmt.Errorf("mark webhook %d notified: %w", id, err)
	}
	return nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
