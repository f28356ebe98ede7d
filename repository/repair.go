package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/jmoiron/sqlx"
)

// ClaimOverdue takes up to limit pending deliveries whose next attempt was due before
// overdue, oldest first, and moves their due time to until, in one transaction: a worker
// sweeping at the same time skips the rows locked here and, once this commits, no longer sees
// them as overdue. So each overdue delivery is returned to one caller per sweep.
//
// Two claims that meet on the due-time index may deadlock; the one InnoDB rolls back is tried
// again.
func (s *Store) ClaimOverdue(ctx context.Context, overdue, until time.Time, limit int) ([]Delivery, error) {
	var ds []Delivery
	err := againOnDeadlock(func() (err error) {
		ds, err = s.claimOverdue(ctx, overdue, until, limit)
		return err
	})
	return ds, Unavailable(err)
}

// errDeadlock is InnoDB's ER_LOCK_DEADLOCK: the transaction was rolled back.
const errDeadlock = 1213

// againOnDeadlock runs fn, and again, up to 10 times in all, while InnoDB rolls it back as
// one side of a deadlock: the other side has gone through by then.
func againOnDeadlock(fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		var me *mysql.MySQLError
		if try < 10 && errors.As(err, &me) && me.Number == errDeadlock {
			continue
		}
		return err
	}
}

func (s *Store) claimOverdue(ctx context.Context, overdue, until time.Time, limit int) ([]Delivery, error) {
	var ds []Delivery
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		ds = ds[:0]
		if err := tx.SelectContext(ctx, &ds, "SELECT "+deliveryColumns+
			" FROM deliveries WHERE due_at < ? AND status = 'pending' ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED",
			overdue.UTC(), limit); err != nil {
			return fmt.Errorf("select overdue deliveries: %w", err)
		}
		if len(ds) == 0 {
			return nil
		}
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		q, args, err := sqlx.In("UPDATE deliveries SET due_at = ? WHERE id IN (?)", until.UTC(), ids)
		if err != nil {
			return fmt.Errorf("claim overdue deliveries: %w", err)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("claim overdue deliveries: %w", err)
		}
		return nil
	})
	return ds, err
}

// OldestDue is the due time of the pending delivery due first, and false when none is pending.
func (s *Store) OldestDue(ctx context.Context) (time.Time, bool, error) {
	var t sql.NullTime
	err := s.db.GetContext(ctx, &t, "SELECT MIN(due_at) FROM deliveries WHERE due_at IS NOT NULL")
	if err != nil {
		return time.Time{}, false, Unavailable(fmt.Errorf("select oldest due delivery: %w", err))
	}
	return t.Time, t.Valid, nil
}
