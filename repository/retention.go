package repository

import (
	"context"
	"fmt"
	"time"
)

// Purge deletes attempts, settled deliveries and events older than before, batch rows per
// statement so that no long lock holds up the hot path, and returns how many rows went.
func (s *Store) Purge(ctx context.Context, before time.Time, batch int) (int64, error) {
	before = before.UTC()
	stmts := []struct{ what, query string }{
		{"attempts", "DELETE FROM attempts WHERE started_at < ? LIMIT ?"},
		{"deliveries", "DELETE FROM deliveries WHERE updated_at < ? AND status <> 'pending' LIMIT ?"},
		{"events", "DELETE FROM events WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'pending') LIMIT ?"},
	}
	var total int64
	for _, st := range stmts {
		for {
			res, err := s.db.ExecContext(ctx, st.query, before, batch)
			if err != nil {
				return total, fmt.Errorf("purge %s: %w", st.what, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("purge %s: %w", st.what, err)
			}
			total += n
			if n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}
