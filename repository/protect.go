package repository

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The state that protects the receivers (contract §8): rate-limit slots, pauses, breakers. The
// policy that reads it is the delivery package's; this file only stores it.

// Reservation is the answer to Reserve.
type Reservation struct {
	// Wait is how long after the database's now the free slot is.
	Wait time.Duration
	// Taken says whether it was reserved: it is beyond the horizon otherwise.
	Taken bool
	// RoundTrip is how long the statement took, on a connection already held: the database's
	// now was that long or less before the answer came.
	RoundTrip time.Duration
}

// Reserve takes the next free slot of webhook id's rate limit, slots interval apart, on the
// database's clock so that every worker shares one, unless it is further than horizon. A
// webhook whose slots have all passed gets one phase from now, not now: webhooks that start
// at the same moment (one event fanned out to many) do not all have their slots at the same
// instants. One statement, no transaction: the row is in a MEMORY table.
func (s *Store) Reserve(ctx context.Context, id uint64, interval, phase, horizon time.Duration) (Reservation, error) {
	// The connection is taken first, so that waiting for the pool is not counted in the
	// round trip: the round trip is how well the worker knows where the slot is.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return Reservation{}, Unavailable(fmt.Errorf("reserve a slot of webhook %d: %w", id, err))
	}
	defer conn.Close()
	// LAST_INSERT_ID(expr) hands expr back in the statement's answer, as its insert id, so
	// that reserving and reading the slot are one round trip: the wait from now to the free
	// slot, whether it is then taken (the row changed) or not.
	sent := time.Now()
	res, err := conn.ExecContext(ctx, `INSERT INTO rate_slots (webhook_id, tat)
		VALUES (?, NOW(6) + INTERVAL LAST_INSERT_ID(?) + ? MICROSECOND)
		ON DUPLICATE KEY UPDATE tat = IF(LAST_INSERT_ID(GREATEST(TIMESTAMPDIFF(MICROSECOND, NOW(6), tat), ?)) <= ?,
			GREATEST(tat, NOW(6) + INTERVAL ? MICROSECOND) + INTERVAL ? MICROSECOND, tat)`,
		id, phase.Microseconds(), interval.Microseconds(), phase.Microseconds(), horizon.Microseconds(), phase.Microseconds(), interval.Microseconds())
	rtt := time.Since(sent)
	if err != nil {
		return Reservation{}, Unavailable(fmt.Errorf("reserve a slot of webhook %d: %w", id, err))
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return Reservation{}, Unavailable(fmt.Errorf("reserve a slot of webhook %d: %w", id, err))
	}
	micros, err := res.LastInsertId()
	if err != nil {
		return Reservation{}, Unavailable(fmt.Errorf("reserve a slot of webhook %d: %w", id, err))
	}
	// 1: a new row, the slot is a phase away; 2: the row moved on; 0: unchanged, beyond the
	// horizon.
	return Reservation{Wait: time.Duration(micros) * time.Microsecond, Taken: changed > 0, RoundTrip: rtt}, nil
}

// Breaker is an open circuit breaker.
type Breaker struct {
	WebhookID uint64    `db:"webhook_id"`
	OpenedAt  time.Time `db:"opened_at"`
	ProbeAt   time.Time `db:"probe_at"`
}

// Pause is a webhook's Retry-After pause.
type Pause struct {
	WebhookID uint64    `db:"webhook_id"`
	Until     time.Time `db:"until"`
}

// Protection returns every open breaker and every pause that lasts beyond now: few rows,
// read by each worker every second rather than per delivery.
func (s *Store) Protection(ctx context.Context, now time.Time) ([]Breaker, []Pause, error) {
	var bs []Breaker
	if err := s.db.SelectContext(ctx, &bs, "SELECT webhook_id, opened_at, probe_at FROM breakers"); err != nil {
		return nil, nil, breakersError("select open breakers", err)
	}
	var ps []Pause
	if err := s.db.SelectContext(ctx, &ps, "SELECT webhook_id, until FROM pauses WHERE until > ?", now.UTC()); err != nil {
		return nil, nil, Unavailable(fmt.Errorf("select pauses: %w", err))
	}
	return bs, ps, nil
}

// Notice is a notification of the outbox table (circuit opened or closed), kept until the
// broker has confirmed its publish.
type Notice struct {
	ID         uint64    `db:"id"`
	RoutingKey string    `db:"routing_key"`
	WebhookID  uint64    `db:"webhook_id"`
	AccountID  uint64    `db:"account_id"`
	URL        string    `db:"url"`
	Reason     string    `db:"reason"`
	At         time.Time `db:"at"`
}

// OpenBreaker opens webhook n.WebhookID's breaker with its first probe at probeAt and resets
// its failed attempts in a row, unless it is open already. The caller whose call opened it
// gets opened true and n with its outbox id: the notice is stored in the same transaction.
func (s *Store) OpenBreaker(ctx context.Context, n Notice, probeAt time.Time) (Notice, bool, error) {
	opened := false
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT IGNORE INTO breakers (webhook_id, opened_at, probe_at) VALUES (?, NOW(6), ?)", n.WebhookID, probeAt.UTC())
		if err != nil {
			return fmt.Errorf("open breaker of webhook %d: %w", n.WebhookID, err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		opened = true
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET attempt_failures = 0 WHERE id = ?", n.WebhookID); err != nil {
			return fmt.Errorf("open breaker of webhook %d: %w", n.WebhookID, err)
		}
		n.ID, err = insertNotice(ctx, tx, n)
		return err
	})
	if err != nil {
		return Notice{}, false, breakersError("open breaker", err)
	}
	return n, opened, nil
}

// CloseBreaker closes webhook n.WebhookID's breaker. The caller whose call closed it gets
// closed true and n with its outbox id, stored in the same transaction.
func (s *Store) CloseBreaker(ctx context.Context, n Notice) (Notice, bool, error) {
	closed := false
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM breakers WHERE webhook_id = ?", n.WebhookID)
		if err != nil {
			return fmt.Errorf("close breaker of webhook %d: %w", n.WebhookID, err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		closed = true
		n.ID, err = insertNotice(ctx, tx, n)
		return err
	})
	if err != nil {
		return Notice{}, false, breakersError("close breaker", err)
	}
	return n, closed, nil
}

func insertNotice(ctx context.Context, tx *sqlx.Tx, n Notice) (uint64, error) {
	res, err := tx.ExecContext(ctx, "INSERT INTO outbox (routing_key, webhook_id, account_id, url, reason, at) VALUES (?,?,?,?,?,?)",
		n.RoutingKey, n.WebhookID, n.AccountID, truncate(n.URL, 2048), truncate(n.Reason, 255), n.At.UTC())
	if err != nil {
		return 0, fmt.Errorf("store %s notice: %w", n.RoutingKey, err)
	}
	id, err := res.LastInsertId()
	return uint64(id), err
}

// ClaimProbe takes webhook id's probe if it is due on the database's clock, and moves the next
// one to every from now: of all the workers asking, one gets it per interval. It reports
// false when the probe is not due or the breaker is closed.
func (s *Store) ClaimProbe(ctx context.Context, id uint64, every time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, "UPDATE breakers SET probe_at = NOW(6) + INTERVAL ? MICROSECOND WHERE webhook_id = ? AND probe_at <= NOW(6)",
		every.Microseconds(), id)
	if err != nil {
		return false, breakersError("claim probe", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, Unavailable(fmt.Errorf("claim probe of webhook %d: %w", id, err))
	}
	return n == 1, nil
}

// DisableOpen disables webhook id, whose breaker stayed open for the whole hold, with a
// reason, and removes its breaker in the same transaction, so that enabling it again starts
// with the circuit closed. It reports whether the webhook was on; its webhook.disabled
// announcement is pending as with Disable.
func (s *Store) DisableOpen(ctx context.Context, id uint64, reason string) (bool, error) {
	changed := false
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET enabled = 0, disabled_reason = ?, consecutive_failures = 0,
			attempt_failures = 0, notify_pending = 1 WHERE id = ? AND enabled = 1`, truncate(reason, 255), id)
		if err != nil {
			return fmt.Errorf("disable webhook %d: %w", id, err)
		}
		n, _ := res.RowsAffected()
		changed = n == 1
		if _, err := tx.ExecContext(ctx, "DELETE FROM breakers WHERE webhook_id = ?", id); err != nil {
			return fmt.Errorf("remove breaker of webhook %d: %w", id, err)
		}
		return nil
	})
	return changed, Unavailable(err)
}

// PendingNotices returns the outbox's notices not confirmed yet, oldest first.
func (s *Store) PendingNotices(ctx context.Context) ([]Notice, error) {
	var ns []Notice
	err := s.db.SelectContext(ctx, &ns, "SELECT id, routing_key, webhook_id, account_id, url, reason, at FROM outbox ORDER BY id LIMIT 100")
	if err != nil {
		return nil, Unavailable(fmt.Errorf("select pending notices: %w", err))
	}
	return ns, nil
}

// NoticeSent removes a published notice from the outbox.
func (s *Store) NoticeSent(ctx context.Context, id uint64) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM outbox WHERE id = ?", id); err != nil {
		return Unavailable(fmt.Errorf("remove notice %d: %w", id, err))
	}
	return nil
}

// ReleaseHeld takes up to limit pending deliveries of webhook id that are due after now, the
// oldest first, and makes them due at now: they are to be attempted at once (their breaker
// has closed). A copy of such a delivery still waiting elsewhere no longer matches its due
// time and is dropped when it comes back.
func (s *Store) ReleaseHeld(ctx context.Context, id uint64, now time.Time, limit int) ([]Delivery, error) {
	now = now.UTC().Truncate(time.Microsecond)
	var ds []Delivery
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		ds = ds[:0]
		if err := tx.SelectContext(ctx, &ds, "SELECT "+deliveryColumns+
			" FROM deliveries WHERE webhook_id = ? AND status = 'pending' AND due_at > ? ORDER BY created_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
			id, now, limit); err != nil {
			return fmt.Errorf("select held deliveries: %w", err)
		}
		if len(ds) == 0 {
			return nil
		}
		ids := make([]string, len(ds))
		for i := range ds {
			ids[i] = ds[i].ID
			ds[i].DueAt = sql.NullTime{Time: now, Valid: true}
		}
		q, args, err := sqlx.In("UPDATE deliveries SET due_at = ? WHERE id IN (?)", now, ids)
		if err != nil {
			return fmt.Errorf("release held deliveries: %w", err)
		}
		_, err = tx.ExecContext(ctx, q, args...)
		return err
	})
	return ds, Unavailable(err)
}

// flushHolds is the group commit of held deliveries' rows.
func (s *Store) flushHolds(ctx context.Context, outcomes []*Outcome) error {
	now := s.now().UTC()
	return s.inTx(ctx, func(tx *sqlx.Tx) error { return holdDeliveries(ctx, tx, outcomes, now) })
}

// holdDeliveries writes the rows of held outcomes: pending with their due time, or only
// their due time moved where the row exists, is pending and has made no later attempt.
func holdDeliveries(ctx context.Context, tx *sqlx.Tx, outcomes []*Outcome, now time.Time) error {
	var q strings.Builder
	var args []any
	for _, o := range outcomes {
		if !o.Held {
			continue
		}
		if len(args) > 0 {
			q.WriteByte(',')
		}
		due := now
		if !o.Due.IsZero() {
			due = o.Due.UTC().Truncate(time.Microsecond)
		}
		q.WriteString("(?,?,?,'pending',?,?,?,?)")
		args = append(args, o.DeliveryID, o.EventID, o.WebhookID, o.Attempt, due, now, now)
	}
	if len(args) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at) VALUES "+
		q.String()+" ON DUPLICATE KEY UPDATE due_at = IF(status = 'pending' AND attempts <= VALUES(attempts), VALUES(due_at), due_at)", args...)
	if err != nil {
		return fmt.Errorf("hold deliveries: %w", err)
	}
	return nil
}

// countAttempts adds the batch's failed attempts to their webhooks' failures in a row (after
// the resets of the batch's successes) and reads back each count and whether the webhook's
// breaker is open. Webhooks are updated in id order, so that two workers' batches take their
// rows' locks in the same order.
func countAttempts(ctx context.Context, tx *sqlx.Tx, outcomes []*Outcome, applied map[*Outcome]bool) error {
	add := map[uint64]int{}
	for _, o := range outcomes {
		if o.CountAttempt {
			if !applied[o] {
				add[o.WebhookID]++
			} else if _, ok := add[o.WebhookID]; !ok {
				add[o.WebhookID] = 0
			}
		}
	}
	if len(add) == 0 {
		return nil
	}
	ids := make([]uint64, 0, len(add))
	for id := range add {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if add[id] == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, "UPDATE webhooks SET attempt_failures = attempt_failures + ? WHERE id = ?", add[id], id); err != nil {
			return fmt.Errorf("count failed attempt: %w", err)
		}
	}
	query, args, err := sqlx.In(`SELECT w.id, w.attempt_failures, b.webhook_id IS NOT NULL AS open
		FROM webhooks w LEFT JOIN breakers b ON b.webhook_id = w.id WHERE w.id IN (?)`, ids)
	if err != nil {
		return fmt.Errorf("read failed attempts: %w", err)
	}
	var rows []struct {
		ID       uint64 `db:"id"`
		Failures int    `db:"attempt_failures"`
		Open     bool   `db:"open"`
	}
	if err := tx.SelectContext(ctx, &rows, query, args...); err != nil {
		return fmt.Errorf("read failed attempts: %w", err)
	}
	for _, r := range rows {
		for _, o := range outcomes {
			if o.CountAttempt && o.WebhookID == r.ID {
				o.attemptFailures, o.breakerOpen = r.Failures, r.Open
			}
		}
	}
	return nil
}

// pauseWebhooks stores the batch's Retry-After pauses; a later pause already stored stays.
func pauseWebhooks(ctx context.Context, tx *sqlx.Tx, outcomes []*Outcome) error {
	for _, o := range outcomes {
		if o.PauseUntil.IsZero() {
			continue
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO pauses (webhook_id, until) VALUES (?, ?) ON DUPLICATE KEY UPDATE until = GREATEST(until, VALUES(until))",
			o.WebhookID, o.PauseUntil.UTC()); err != nil {
			return fmt.Errorf("pause webhook %d: %w", o.WebhookID, err)
		}
	}
	return nil
}
