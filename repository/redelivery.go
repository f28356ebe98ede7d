package repository

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// DeliveryFilter selects deliveries to redeliver. Zero fields do not filter.
type DeliveryFilter struct {
	IDs       []string
	EventID   string
	WebhookID uint64
	Status    string
	Since     time.Time
	Until     time.Time
}

// FindDeliveries returns the ids of the deliveries matching f whose webhook still exists and
// is enabled, oldest first.
func (s *Store) FindDeliveries(ctx context.Context, f DeliveryFilter) ([]string, error) {
	var where []string
	var args []any
	if len(f.IDs) > 0 {
		where = append(where, "d.id IN (?"+strings.Repeat(",?", len(f.IDs)-1)+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if f.EventID != "" {
		where = append(where, "d.event_id = ?")
		args = append(args, f.EventID)
	}
	if f.WebhookID != 0 {
		where = append(where, "d.webhook_id = ?")
		args = append(args, f.WebhookID)
	}
	if f.Status != "" {
		where = append(where, "d.status = ?")
		args = append(args, f.Status)
	}
	if !f.Since.IsZero() {
		where = append(where, "d.created_at >= ?")
		args = append(args, f.Since.UTC())
	}
	if !f.Until.IsZero() {
		where = append(where, "d.created_at < ?")
		args = append(args, f.Until.UTC())
	}
	if len(where) == 0 {
		return nil, fmt.Errorf("find deliveries: no filter given")
	}
	q := "SELECT d.id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled = 1 WHERE " +
		strings.Join(where, " AND ") + " ORDER BY d.created_at, d.id"
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, q, args...); err != nil {
		return nil, fmt.Errorf("find deliveries: %w", err)
	}
	return ids, nil
}

// Unsent returns the ids of stored events received in [since, until) that webhook w matches
// (account, event, project) and has no delivery for, or only one never attempted (a replay
// cut short), oldest first.
func (s *Store) Unsent(ctx context.Context, w Webhook, since, until time.Time) ([]string, error) {
	q := `SELECT e.id FROM events e
		WHERE e.account_id = ? AND e.event = ? AND e.received_at >= ? AND e.received_at < ?
		AND (? IS NULL OR e.project_id = ?)
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.webhook_id = ?
			AND NOT (d.status = 'pending' AND d.attempts = 0))
		ORDER BY e.received_at, e.id`
	var ids []string
	err := s.db.SelectContext(ctx, &ids, q, w.AccountID, w.Event, since.UTC(), until.UTC(), w.ProjectID, w.ProjectID, w.ID)
	if err != nil {
		return nil, fmt.Errorf("find unsent events: %w", err)
	}
	return ids, nil
}

// CreateDelivery makes the pending delivery of event eventID to webhook webhookID, if it does
// not exist yet, and returns its id.
func (s *Store) CreateDelivery(ctx context.Context, eventID string, webhookID uint64) (string, error) {
	id := DeliveryID(eventID, webhookID)
	now := s.now().UTC()
	_, err := s.db.ExecContext(ctx,
		"INSERT IGNORE INTO deliveries (id, event_id, webhook_id, status, attempts, created_at, updated_at) VALUES (?,?,?,'pending',0,?,?)",
		id, eventID, webhookID, now, now)
	if err != nil {
		return "", fmt.Errorf("create delivery: %w", err)
	}
	return id, nil
}
