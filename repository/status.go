package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// errNoSuchTable is MySQL's ER_NO_SUCH_TABLE.
const errNoSuchTable = 1146

// ErrNoBreakers means the database has no breakers table: it was not migrated since the
// circuit breaker came.
var ErrNoBreakers = errors.New("no breakers table (run webhookd migrate)")

// OpenBreakers counts the webhooks whose circuit breaker is open: the rows of breakers. It
// fails with ErrNoBreakers when there is no such table.
func (s *Store) OpenBreakers(ctx context.Context) (int, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM breakers"); err != nil {
		return 0, breakersError("count open breakers", err)
	}
	return n, nil
}

func breakersError(what string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == errNoSuchTable {
		return fmt.Errorf("%s: %w", what, ErrNoBreakers)
	}
	return Unavailable(fmt.Errorf("%s: %w", what, err))
}

// Status is what the delivery log tells an operator at a glance (`webhookd status`).
type Status struct {
	// Outcomes counts the deliveries that last changed at or after the since given, by status:
	// pending, succeeded, failed.
	Outcomes map[string]int
	// Due is the pending delivery due first, when HasDue: none may be pending.
	Due    DueDelivery
	HasDue bool
	// Disabled are disabled webhooks, the most recently changed first, at most the limit
	// given; DisabledCount counts them all.
	Disabled      []WebhookState
	DisabledCount int
	// Breakers are the webhooks whose breaker is open, the longest open first, at most the
	// limit given; BreakersCount counts them all. BreakersErr is ErrNoBreakers when the
	// database has no breakers table, and both are then empty.
	Breakers      []WebhookState
	BreakersCount int
	BreakersErr   error
}

// DueDelivery is a pending delivery and when its next attempt is due.
type DueDelivery struct {
	ID        string    `db:"id"`
	WebhookID uint64    `db:"webhook_id"`
	Attempts  int       `db:"attempts"`
	DueAt     time.Time `db:"due_at"`
}

// WebhookState is a webhook that gets no deliveries, or only probes, and why.
type WebhookState struct {
	ID        uint64         `db:"id"`
	AccountID sql.NullInt64  `db:"account_id"`
	URL       sql.NullString `db:"url"`
	// Reason is why it was disabled (disabled_reason); empty for a breaker.
	Reason sql.NullString `db:"reason"`
	// Since is when it was disabled (its last change) or its breaker opened.
	Since time.Time `db:"since"`
}

// Status reads the log's status: outcomes since since, the pending delivery due first, and up
// to limit disabled webhooks and webhooks with an open breaker. Each query is served by an
// index but the disabled webhooks', which reads the webhooks table.
func (s *Store) Status(ctx context.Context, since time.Time, limit int) (Status, error) {
	st := Status{Outcomes: map[string]int{StatusPending: 0, StatusSucceeded: 0, StatusFailed: 0}}
	var counts []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := s.db.SelectContext(ctx, &counts,
		"SELECT status, COUNT(*) AS n FROM deliveries WHERE updated_at >= ? GROUP BY status", since.UTC()); err != nil {
		return st, Unavailable(fmt.Errorf("count recent deliveries: %w", err))
	}
	for _, c := range counts {
		st.Outcomes[c.Status] = c.N
	}
	err := s.db.GetContext(ctx, &st.Due,
		"SELECT id, webhook_id, attempts, due_at FROM deliveries WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1")
	switch {
	case err == nil:
		st.HasDue = true
	case !errors.Is(err, sql.ErrNoRows):
		return st, Unavailable(fmt.Errorf("select the delivery due first: %w", err))
	}
	if err := s.db.GetContext(ctx, &st.DisabledCount, "SELECT COUNT(*) FROM webhooks WHERE enabled = 0"); err != nil {
		return st, Unavailable(fmt.Errorf("count disabled webhooks: %w", err))
	}
	if err := s.db.SelectContext(ctx, &st.Disabled,
		`SELECT id, account_id, url, disabled_reason AS reason, updated_at AS since FROM webhooks
		WHERE enabled = 0 ORDER BY updated_at DESC, id LIMIT ?`, limit); err != nil {
		return st, Unavailable(fmt.Errorf("select disabled webhooks: %w", err))
	}
	if st.BreakersCount, err = s.OpenBreakers(ctx); err != nil {
		if !errors.Is(err, ErrNoBreakers) {
			return st, err
		}
		st.BreakersErr = err
		return st, nil
	}
	// A breaker's webhook may have been deleted meanwhile: its row stays until the breaker
	// removes it, and shows without account or URL.
	if err := s.db.SelectContext(ctx, &st.Breakers,
		`SELECT b.webhook_id AS id, w.account_id, w.url, NULL AS reason, b.opened_at AS since
		FROM breakers b LEFT JOIN webhooks w ON w.id = b.webhook_id ORDER BY b.opened_at, b.webhook_id LIMIT ?`, limit); err != nil {
		return st, breakersError("select open breakers", err)
	}
	return st, nil
}
