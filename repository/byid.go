package repository

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Rows by id, many in one query: a message of held deliveries brings back up to a few hundred,
// and reading each one's delivery, webhook and event on its own made them late for their
// rate-limit slots.

// DeliveriesByID returns the deliveries of ids that exist, by id.
func (s *Store) DeliveriesByID(ctx context.Context, ids []string) (map[string]Delivery, error) {
	out := make(map[string]Delivery, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT "+deliveryColumns+" FROM deliveries WHERE id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("select deliveries: %w", err)
	}
	var ds []Delivery
	if err := s.db.SelectContext(ctx, &ds, q, args...); err != nil {
		return nil, fmt.Errorf("select deliveries: %w", err)
	}
	for _, d := range ds {
		out[d.ID] = d
	}
	return out, nil
}

// WebhooksByID returns the webhooks of ids that exist, enabled or not, by id.
func (s *Store) WebhooksByID(ctx context.Context, ids []uint64) (map[uint64]Webhook, error) {
	out := make(map[uint64]Webhook, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT "+webhookColumns+" FROM webhooks WHERE id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("select webhooks: %w", err)
	}
	var ws []Webhook
	if err := s.db.SelectContext(ctx, &ws, q, args...); err != nil {
		return nil, fmt.Errorf("select webhooks: %w", err)
	}
	for _, w := range ws {
		out[w.ID] = w
	}
	return out, nil
}

// EventsByID returns the stored events of ids, by id.
func (s *Store) EventsByID(ctx context.Context, ids []string) (map[string]Event, error) {
	out := make(map[string]Event, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := sqlx.In("SELECT id, event, account_id, project_id, object_id, occurred_at, data, received_at FROM events WHERE id IN (?)", ids)
	if err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	var es []Event
	if err := s.db.SelectContext(ctx, &es, q, args...); err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	for _, e := range es {
		out[e.ID] = e
	}
	return out, nil
}
