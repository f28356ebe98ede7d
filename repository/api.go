package repository

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The delivery API's reads and writes (contract §10). Every query here takes the account of
// the caller's token and scopes its rows by it in SQL: a row of another account is not found,
// exactly as a row that does not exist.

// Key is a row's place in a list ordered by time, then id: the keyset a page starts after.
type Key struct {
	At time.Time
	ID string
}

// conds collects the conditions of a WHERE clause and their arguments, in order.
type conds struct {
	clauses []string
	args    []any
}

func (c *conds) add(clause string, args ...any) {
	c.clauses = append(c.clauses, clause)
	c.args = append(c.args, args...)
}

func (c *conds) where() string { return " WHERE " + strings.Join(c.clauses, " AND ") }

// newerThan and olderThan page a list by (at, id): newest first starts below the key, oldest
// first above it. Spelled with OR rather than a row comparison, which MariaDB does not turn
// into an index range.
func (c *conds) olderThan(at, id string, k *Key) {
	if k != nil {
		c.add("("+at+" < ? OR ("+at+" = ? AND "+id+" < ?))", k.At.UTC(), k.At.UTC(), k.ID)
	}
}

func (c *conds) newerThan(at, id string, k *Key) {
	if k != nil {
		c.add("("+at+" > ? OR ("+at+" = ? AND "+id+" > ?))", k.At.UTC(), k.At.UTC(), k.ID)
	}
}

// createdIn limits col to [since, until); zero times do not limit.
func (c *conds) createdIn(col string, since, until time.Time) {
	if !since.IsZero() {
		c.add(col+" >= ?", since.UTC())
	}
	if !until.IsZero() {
		c.add(col+" < ?", until.UTC())
	}
}

// objectIDs are the stored spellings of an object id given as text: events keep the JSON of
// their objectId as received, so "42" is the number 42 or the string "42", and a string is
// looked for as JSON encoders commonly write it, with and without <, > and & escaped.
func objectIDs(id string) []any {
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	enc.Encode(id)
	escaped, _ := json.Marshal(id)
	out := []any{strings.TrimSuffix(plain.String(), "\n"), string(escaped)}
	if _, err := strconv.ParseInt(id, 10, 64); err == nil {
		out = append(out, id)
	}
	return out
}

// in is "col IN (?,…)" for n values.
func in(col string, n int) string { return col + " IN (?" + strings.Repeat(",?", n-1) + ")" }

// AccountWebhook is a webhook as its account sees it: everything but the signing token.
type AccountWebhook struct {
	ID                  uint64         `db:"id"`
	Event               string         `db:"event"`
	ProjectID           sql.NullInt64  `db:"project_id"`
	URL                 string         `db:"url"`
	Format              string         `db:"format"`
	Enabled             bool           `db:"enabled"`
	DisabledReason      sql.NullString `db:"disabled_reason"`
	ConsecutiveFailures int            `db:"consecutive_failures"`
	RateLimit           sql.NullInt64  `db:"rate_limit"`
	Ordered             bool           `db:"ordered"`
	// CircuitOpen is whether the webhook has a row in breakers.
	CircuitOpen bool      `db:"circuit_open"`
	CreatedAt   time.Time `db:"created_at"`
}

// Key is the webhook's place in the list of its account's webhooks.
func (w AccountWebhook) Key() Key { return Key{At: w.CreatedAt, ID: strconv.FormatUint(w.ID, 10)} }

const accountWebhookSelect = `SELECT w.id, w.event, w.project_id, w.url, w.format, w.enabled, w.disabled_reason,
	w.consecutive_failures, w.rate_limit, w.ordered, b.webhook_id IS NOT NULL AS circuit_open, w.created_at
	FROM webhooks w LEFT JOIN breakers b ON b.webhook_id = w.id`

// AccountWebhooks returns up to limit webhooks of account, newest first, after the key.
func (s *Store) AccountWebhooks(ctx context.Context, account uint64, after *Key, limit int) ([]AccountWebhook, error) {
	var c conds
	c.add("w.account_id = ?", account)
	if after != nil {
		// Webhook ids are numbers: compare them as numbers.
		id, err := strconv.ParseUint(after.ID, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("webhooks after %q: not a webhook id", after.ID)
		}
		c.add("(w.created_at < ? OR (w.created_at = ? AND w.id < ?))", after.At.UTC(), after.At.UTC(), id)
	}
	var hooks []AccountWebhook
	q := accountWebhookSelect + c.where() + " ORDER BY w.created_at DESC, w.id DESC LIMIT ?"
	if err := s.db.SelectContext(ctx, &hooks, q, append(c.args, limit)...); err != nil {
		return nil, fmt.Errorf("select webhooks of account %d: %w", account, err)
	}
	return hooks, nil
}

// AccountWebhook returns webhook id of account, or ErrNotFound.
func (s *Store) AccountWebhook(ctx context.Context, account, id uint64) (AccountWebhook, error) {
	var w AccountWebhook
	err := s.db.GetContext(ctx, &w, accountWebhookSelect+" WHERE w.account_id = ? AND w.id = ?", account, id)
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("webhook %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("select webhook %d: %w", id, err)
	}
	return w, nil
}

// SigningWebhook returns webhook id of account with its token, or ErrNotFound: what rendering
// an attempt and replaying need. The token is a key, never an answer.
func (s *Store) SigningWebhook(ctx context.Context, account, id uint64) (Webhook, error) {
	var w Webhook
	err := s.db.GetContext(ctx, &w, "SELECT "+webhookColumns+" FROM webhooks WHERE account_id = ? AND id = ?", account, id)
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("webhook %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return w, fmt.Errorf("select webhook %d: %w", id, err)
	}
	return w, nil
}

// WebhookStats counts a webhook's deliveries created since a time, by status, and names its
// latest failed delivery.
type WebhookStats struct {
	Pending, Succeeded, Failed int
	// LastFailure is the newest failed delivery of the webhook, at any time; nil if none.
	LastFailure *Delivery
}

// WebhookStats returns the stats of webhook id, which the caller has found in its account.
func (s *Store) WebhookStats(ctx context.Context, id uint64, since time.Time) (WebhookStats, error) {
	var st WebhookStats
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	err := s.db.SelectContext(ctx, &rows,
		"SELECT status, COUNT(*) AS n FROM deliveries WHERE webhook_id = ? AND created_at >= ? GROUP BY status", id, since.UTC())
	if err != nil {
		return st, fmt.Errorf("count deliveries of webhook %d: %w", id, err)
	}
	for _, r := range rows {
		switch r.Status {
		case StatusPending:
			st.Pending = r.N
		case StatusSucceeded:
			st.Succeeded = r.N
		case StatusFailed:
			st.Failed = r.N
		}
	}
	var last Delivery
	err = s.db.GetContext(ctx, &last, "SELECT "+deliveryColumns+
		" FROM deliveries WHERE webhook_id = ? AND status = 'failed' ORDER BY created_at DESC, id DESC LIMIT 1", id)
	switch {
	case err == nil:
		st.LastFailure = &last
	case !errors.Is(err, sql.ErrNoRows):
		return st, fmt.Errorf("select last failure of webhook %d: %w", id, err)
	}
	return st, nil
}

// EnableWebhook turns webhook id of account on again with no failures in a row and its
// circuit closed, or returns ErrNotFound. A reason whose announcement is still to be
// published stays for the announcement.
func (s *Store) EnableWebhook(ctx context.Context, account, id uint64) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET enabled = 1, consecutive_failures = 0,
			disabled_reason = IF(notify_pending = 1, disabled_reason, NULL) WHERE account_id = ? AND id = ?`, account, id)
		if err != nil {
			return fmt.Errorf("enable webhook %d: %w", id, err)
		}
		// Rows matched, not changed, answers whether it exists: the DSN does not set
		// clientFoundRows, so an already enabled webhook counts 0. Ask instead.
		if n, _ := res.RowsAffected(); n == 0 {
			var found int
			err := tx.GetContext(ctx, &found, "SELECT COUNT(*) FROM webhooks WHERE account_id = ? AND id = ?", account, id)
			if err != nil {
				return fmt.Errorf("enable webhook %d: %w", id, err)
			}
			if found == 0 {
				return fmt.Errorf("webhook %d: %w", id, ErrNotFound)
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM breakers WHERE webhook_id = ?", id); err != nil {
			return fmt.Errorf("close circuit of webhook %d: %w", id, err)
		}
		return nil
	})
}
