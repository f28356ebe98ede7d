package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/webhookd/webhookd/internal/batch"
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// Delivery is one (event, webhook) pair and where it stands.
type Delivery struct {
	ID             string         `db:"id"`
	EventID        string         `db:"event_id"`
	WebhookID      uint64         `db:"webhook_id"`
	Status         string         `db:"status"`
	Attempts       int            `db:"attempts"`
	LastStatusCode sql.NullInt64  `db:"last_status_code"`
	LastError      sql.NullString `db:"last_error"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
	// DueAt is when the next attempt is due, while pending; NULL once settled.
	DueAt sql.NullTime `db:"due_at"`
}

const deliveryColumns = "id, event_id, webhook_id, status, attempts, last_status_code, last_error, created_at, updated_at, due_at"

// Outcome is the result of one attempt and the status it leaves the delivery in.
type Outcome struct {
	DeliveryID string
	EventID    string
	WebhookID  uint64
	// Attempt is the attempt's number, 1 for the first.
	Attempt int
	// Status is the delivery's status after the attempt: pending while retries remain.
	Status       string
	StatusCode   int
	Error        string
	StartedAt    time.Time
	Duration     time.Duration
	ResponseBody []byte
	// Due is when the next attempt is due, while Status is pending: the repair sweep re-drives
	// a delivery long overdue. Zero means now.
	Due time.Time
	// NoAttempt records a status change that made no request (a delivery settled because
	// its webhook went away): no attempt row is written.
	NoAttempt bool
	// CountFailure adds the failed delivery to its webhook's failures in a row, in the same
	// transaction, so that no crash can lose it from the count.
	CountFailure bool
	// Again marks an outcome recorded again after an error: the earlier call may have been
	// applied all the same.
	Again bool
	// Held records a delivery that waits without an attempt until Due (a rate limit, a pause,
	// an open breaker, the worker's own outage): its row is written pending with Attempt
	// attempts made if it has none; otherwise only its due time moves, and only while it is
	// pending and has made no attempt beyond Attempt. Nothing else of the row changes and no
	// attempt row is written.
	Held bool
	// CountAttempt adds the failed attempt to its webhook's failed attempts in a row, in the
	// same transaction; Recorded then says how many there are and whether the breaker is open.
	CountAttempt bool
	// PauseUntil, if set, pauses every delivery to the webhook until then (a Retry-After),
	// in the same transaction. A later pause already stored is kept.
	PauseUntil time.Time

	// failures is filled by the flush: the webhook's failed deliveries in a row once a
	// CountFailure outcome is recorded.
	failures int
	// attemptFailures and breakerOpen are filled by the flush for a CountAttempt outcome.
	attemptFailures int
	breakerOpen     bool
}

// Recorded is what the log says once an outcome is recorded.
type Recorded struct {
	// FailuresInARow is the webhook's failed deliveries in a row, counting this one, for an
	// outcome with CountFailure; 0 otherwise.
	FailuresInARow int
	// AttemptFailures is the webhook's failed attempts in a row, counting this one, for an
	// outcome with CountAttempt; 0 otherwise. Every worker's failures count in it.
	AttemptFailures int
	// BreakerOpen says, for an outcome with CountAttempt, whether the webhook's breaker was
	// open when it was recorded.
	BreakerOpen bool
}

// Record stores the attempt and the delivery's new status durably, group-committed with
// other callers' outcomes, and answers what the disable decision needs. An outcome for an
// older attempt than the delivery has seen never overwrites a newer one.
func (s *Store) Record(ctx context.Context, o Outcome) (Recorded, error) {
	b := s.records
	if o.Held {
		b = s.holds
	}
	if err := b.Do(ctx, &o); err != nil {
		return Recorded{}, err
	}
	return Recorded{FailuresInARow: o.failures, AttemptFailures: o.attemptFailures, BreakerOpen: o.breakerOpen}, nil
}

func (s *Store) flushOutcomes(ctx context.Context, outcomes []*Outcome) error {
	now := s.now().UTC()
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		// An outcome is recorded again when the answer to its COMMIT was lost, committed or
		// not: one whose attempt row is there already was applied, and must not log its
		// attempt or count its failure twice. Only then is it worth a look.
		var applied map[*Outcome]bool
		if batch.Again(ctx) || slices.ContainsFunc(outcomes, func(o *Outcome) bool { return o.Again }) {
			var err error
			if applied, err = appliedOutcomes(ctx, tx, outcomes); err != nil {
				return err
			}
		}
		var q strings.Builder
		var args []any
		q.WriteString("INSERT INTO attempts (delivery_id, attempt, started_at, duration_us, status_code, error, response_body) VALUES ")
		rows := 0
		for _, o := range outcomes {
			if o.NoAttempt || o.Held || applied[o] {
				continue
			}
			if rows > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?)")
			args = append(args, o.DeliveryID, o.Attempt, startedAt(o), o.Duration.Microseconds(),
				nullInt(o.StatusCode), nullString(o.Error), o.ResponseBody)
			rows++
		}
		if rows > 0 {
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("insert attempts: %w", err)
			}
		}

		if err := holdDeliveries(ctx, tx, outcomes, now); err != nil {
			return err
		}
		q.Reset()
		args = args[:0]
		q.WriteString("INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, last_status_code, last_error, due_at, created_at, updated_at) VALUES ")
		var succeeded []uint64
		rows = 0
		for _, o := range outcomes {
			if o.Held {
				continue
			}
			if rows > 0 {
				q.WriteByte(',')
			}
			rows++
			q.WriteString("(?,?,?,?,?,?,?,?,?,?)")
			args = append(args, o.DeliveryID, o.EventID, o.WebhookID, o.Status, o.Attempt,
				nullInt(o.StatusCode), nullString(o.Error), dueAt(o, now), now, now)
			if o.Status == StatusSucceeded {
				succeeded = append(succeeded, o.WebhookID)
			}
		}
		// MySQL applies these assignments left to right, each seeing the ones before:
		// attempts must come last so that the comparisons read the stored count.
		q.WriteString(` ON DUPLICATE KEY UPDATE
			status = IF(VALUES(attempts) >= attempts, VALUES(status), status),
			last_status_code = IF(VALUES(attempts) >= attempts, VALUES(last_status_code), last_status_code),
			last_error = IF(VALUES(attempts) >= attempts, VALUES(last_error), last_error),
			due_at = IF(VALUES(attempts) >= attempts, VALUES(due_at), due_at),
			updated_at = VALUES(updated_at),
			attempts = GREATEST(attempts, VALUES(attempts))`)
		if rows > 0 {
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("upsert deliveries: %w", err)
			}
		}
		for _, o := range outcomes {
			if !o.CountFailure {
				continue
			}
			if !applied[o] {
				if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", o.WebhookID); err != nil {
					return fmt.Errorf("count failure: %w", err)
				}
			}
			// A webhook deleted meanwhile has no count: 0 disables nothing.
			o.failures = 0
			err := tx.GetContext(ctx, &o.failures, "SELECT consecutive_failures FROM webhooks WHERE id = ?", o.WebhookID)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read failures: %w", err)
			}
		}
		if len(succeeded) > 0 {
			query, inArgs, err := sqlx.In(`UPDATE webhooks SET consecutive_failures = 0, attempt_failures = 0
				WHERE (consecutive_failures > 0 OR attempt_failures > 0) AND id IN (?)`, succeeded)
			if err != nil {
				return fmt.Errorf("reset failures: %w", err)
			}
			if _, err := tx.ExecContext(ctx, query, inArgs...); err != nil {
				return fmt.Errorf("reset failures: %w", err)
			}
		}
		if err := countAttempts(ctx, tx, outcomes, applied); err != nil {
			return err
		}
		return pauseWebhooks(ctx, tx, outcomes)
	})
}

// dueAt is the due time stored with o: NULL once the delivery has settled.
func dueAt(o *Outcome, now time.Time) sql.NullTime {
	switch {
	case o.Status != StatusPending:
		return sql.NullTime{}
	case o.Due.IsZero():
		return sql.NullTime{Time: now, Valid: true}
	}
	return sql.NullTime{Time: o.Due.UTC(), Valid: true}
}

// startedAt is the attempt's start as stored: DATETIME(6) keeps microseconds, and a time cut
// to them reads back equal, which appliedOutcomes relies on.
func startedAt(o *Outcome) time.Time { return o.StartedAt.UTC().Truncate(time.Microsecond) }

// appliedOutcomes returns the outcomes whose attempt row is stored already: the same
// delivery, attempt and start. Two real requests never share all three.
func appliedOutcomes(ctx context.Context, tx *sqlx.Tx, outcomes []*Outcome) (map[*Outcome]bool, error) {
	var ids []string
	for _, o := range outcomes {
		if !o.NoAttempt && !o.Held {
			ids = append(ids, o.DeliveryID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	query, args, err := sqlx.In("SELECT delivery_id, attempt, started_at FROM attempts WHERE delivery_id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("select logged attempts: %w", err)
	}
	var rows []struct {
		DeliveryID string    `db:"delivery_id"`
		Attempt    int       `db:"attempt"`
		StartedAt  time.Time `db:"started_at"`
	}
	if err := tx.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("select logged attempts: %w", err)
	}
	type key struct {
		id      string
		attempt int
		micros  int64
	}
	logged := make(map[key]bool, len(rows))
	for _, r := range rows {
		logged[key{r.DeliveryID, r.Attempt, r.StartedAt.UnixMicro()}] = true
	}
	applied := map[*Outcome]bool{}
	for _, o := range outcomes {
		if !o.NoAttempt && !o.Held && logged[key{o.DeliveryID, o.Attempt, startedAt(o).UnixMicro()}] {
			applied[o] = true
		}
	}
	return applied, nil
}

// GetDelivery returns the delivery with id, or ErrNotFound.
func (s *Store) GetDelivery(ctx context.Context, id string) (Delivery, error) {
	var d Delivery
	err := s.db.GetContext(ctx, &d, "SELECT "+deliveryColumns+" FROM deliveries WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, fmt.Errorf("delivery %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("select delivery %q: %w", id, err)
	}
	return d, nil
}

// EventDeliveries returns the deliveries of an event, in webhook order.
func (s *Store) EventDeliveries(ctx context.Context, eventID string) ([]Delivery, error) {
	var ds []Delivery
	err := s.db.SelectContext(ctx, &ds, "SELECT "+deliveryColumns+" FROM deliveries WHERE event_id = ? ORDER BY webhook_id", eventID)
	if err != nil {
		return nil, fmt.Errorf("select deliveries of event %q: %w", eventID, err)
	}
	return ds, nil
}

// Attempt is one logged attempt.
type Attempt struct {
	DeliveryID   string         `db:"delivery_id"`
	Attempt      int            `db:"attempt"`
	StartedAt    time.Time      `db:"started_at"`
	DurationUS   int64          `db:"duration_us"`
	StatusCode   sql.NullInt64  `db:"status_code"`
	Error        sql.NullString `db:"error"`
	ResponseBody []byte         `db:"response_body"`
}

// Attempts returns the logged attempts of a delivery, oldest first.
func (s *Store) Attempts(ctx context.Context, deliveryID string) ([]Attempt, error) {
	var as []Attempt
	err := s.db.SelectContext(ctx, &as,
		"SELECT delivery_id, attempt, started_at, duration_us, status_code, error, response_body FROM attempts WHERE delivery_id = ? ORDER BY attempt, id", deliveryID)
	if err != nil {
		return nil, fmt.Errorf("select attempts of %q: %w", deliveryID, err)
	}
	return as, nil
}

func nullInt(n int) sql.NullInt64 {
	return sql.NullInt64{Int64: int64(n), Valid: n != 0}
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
