package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
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

const webhookColumns = "id, account_id, project_id, event, url, format, token, enabled"

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

// Disable turns webhook id off with a reason and reports whether it was on until now, so that
// exactly one caller announces it.
func (s *Store) Disable(ctx context.Context, id uint64, reason string) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		"UPDATE webhooks SET enabled = 0, disabled_reason = ? WHERE id = ? AND enabled = 1", truncate(reason, 255), id)
	if err != nil {
		return false, fmt.Errorf("disable webhook %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("disable webhook %d: %w", id, err)
	}
	return n == 1, nil
}

// CountFailure adds one to the webhook's failed deliveries in a row and returns the new count.
func (s *Store) CountFailure(ctx context.Context, id uint64) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", id); err != nil {
			return fmt.Errorf("count failure of webhook %d: %w", id, err)
		}
		err := tx.GetContext(ctx, &n, "SELECT consecutive_failures FROM webhooks WHERE id = ?", id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("webhook %d: %w", id, ErrNotFound)
		}
		return err
	})
	return n, err
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
