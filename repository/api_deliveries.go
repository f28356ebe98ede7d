package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AccountDelivery is a delivery with the name of its event.
type AccountDelivery struct {
	Delivery
	// Event is the event's name; the webhook's event once the event is purged.
	Event string `db:"event"`
}

// Key is the delivery's place in the lists of deliveries.
func (d AccountDelivery) Key() Key { return Key{At: d.CreatedAt, ID: d.ID} }

// accountDeliverySelect reads deliveries through their webhook, which names the account. The
// event is joined optionally: a delivery redelivered late is kept past its event's purge.
const accountDeliverySelect = `SELECT d.id, d.event_id, d.webhook_id, d.status, d.attempts, d.last_status_code,
	d.last_error, d.created_at, d.updated_at, COALESCE(e.event, w.event) AS event
	FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id LEFT JOIN events e ON e.id = d.event_id`

// DeliveryQuery selects a page of an account's deliveries. Zero fields do not filter.
type DeliveryQuery struct {
	WebhookID uint64
	Status    string
	// Event is the event name, EventID one event's id, ObjectID its objectId as text.
	Event, EventID, ObjectID string
	// Since and Until bound created_at to [Since, Until).
	Since, Until time.Time
	// After is the last delivery of the previous page.
	After *Key
	Limit int
}

func (q DeliveryQuery) conds(account uint64) conds {
	var c conds
	c.add("w.account_id = ?", account)
	if q.WebhookID != 0 {
		c.add("d.webhook_id = ?", q.WebhookID)
	}
	if q.Status != "" {
		c.add("d.status = ?", q.Status)
	}
	if q.Event != "" {
		c.add("e.event = ?", q.Event)
	}
	if q.EventID != "" {
		c.add("d.event_id = ?", q.EventID)
	}
	if q.ObjectID != "" {
		ids := objectIDs(q.ObjectID)
		c.add(in("e.object_id", len(ids)), ids...)
		// The events of one object are found through events_account_object.
		c.add("e.account_id = ?", account)
	}
	c.createdIn("d.created_at", q.Since, q.Until)
	return c
}

// AccountDeliveries returns a page of account's deliveries matching q, newest first.
func (s *Store) AccountDeliveries(ctx context.Context, account uint64, q DeliveryQuery) ([]AccountDelivery, error) {
	c := q.conds(account)
	c.olderThan("d.created_at", "d.id", q.After)
	var ds []AccountDelivery
	query := accountDeliverySelect + c.where() + " ORDER BY d.created_at DESC, d.id DESC LIMIT ?"
	if err := s.db.SelectContext(ctx, &ds, query, append(c.args, q.Limit)...); err != nil {
		return nil, fmt.Errorf("select deliveries of account %d: %w", account, err)
	}
	return ds, nil
}

// AccountDelivery returns delivery id of account, or ErrNotFound.
func (s *Store) AccountDelivery(ctx context.Context, account uint64, id string) (AccountDelivery, error) {
	var d AccountDelivery
	err := s.db.GetContext(ctx, &d, accountDeliverySelect+" WHERE w.account_id = ? AND d.id = ?", account, id)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("delivery %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("select delivery %q: %w", id, err)
	}
	return d, nil
}

// AccountEventDeliveries returns the deliveries of event eventID to account's webhooks, in
// webhook order.
func (s *Store) AccountEventDeliveries(ctx context.Context, account uint64, eventID string) ([]AccountDelivery, error) {
	var ds []AccountDelivery
	err := s.db.SelectContext(ctx, &ds, accountDeliverySelect+" WHERE w.account_id = ? AND d.event_id = ? ORDER BY d.webhook_id",
		account, eventID)
	if err != nil {
		return nil, fmt.Errorf("select deliveries of event %q: %w", eventID, err)
	}
	return ds, nil
}

// RetryQuery selects the deliveries a bulk retry redelivers. Zero fields do not filter.
type RetryQuery struct {
	WebhookID    uint64
	Status       string
	Since, Until time.Time
}

// RetryBatch returns up to n keys of account's deliveries matching q whose webhook is
// enabled, oldest first, after the key: a bulk retry walks them batch by batch, so that
// neither memory nor one statement grows with the log.
func (s *Store) RetryBatch(ctx context.Context, account uint64, q RetryQuery, after *Key, n int) ([]Key, error) {
	var c conds
	c.add("w.account_id = ?", account)
	c.add("w.enabled = 1")
	if q.WebhookID != 0 {
		c.add("d.webhook_id = ?", q.WebhookID)
	}
	if q.Status != "" {
		c.add("d.status = ?", q.Status)
	}
	c.createdIn("d.created_at", q.Since, q.Until)
	c.newerThan("d.created_at", "d.id", after)
	var rows []struct {
		ID        string    `db:"id"`
		CreatedAt time.Time `db:"created_at"`
	}
	query := "SELECT d.id, d.created_at FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id" + c.where() +
		" ORDER BY d.created_at, d.id LIMIT ?"
	if err := s.db.SelectContext(ctx, &rows, query, append(c.args, n)...); err != nil {
		return nil, fmt.Errorf("select deliveries to retry: %w", err)
	}
	keys := make([]Key, len(rows))
	for i, r := range rows {
		keys[i] = Key{At: r.CreatedAt, ID: r.ID}
	}
	return keys, nil
}

// EventQuery selects a page of an account's stored events. Zero fields do not filter.
type EventQuery struct {
	// Event is the event name; ObjectID the objectId as text.
	Event, ObjectID string
	// Since and Until bound received_at to [Since, Until).
	Since, Until time.Time
	// After is the last event of the previous page.
	After *Key
	Limit int
}

const eventColumns = "id, event, account_id, project_id, object_id, occurred_at, data, received_at"

// AccountEvents returns a page of account's events matching q, newest first.
func (s *Store) AccountEvents(ctx context.Context, account uint64, q EventQuery) ([]Event, error) {
	var c conds
	c.add("account_id = ?", account)
	if q.Event != "" {
		c.add("event = ?", q.Event)
	}
	if q.ObjectID != "" {
		ids := objectIDs(q.ObjectID)
		c.add(in("object_id", len(ids)), ids...)
	}
	c.createdIn("received_at", q.Since, q.Until)
	c.olderThan("received_at", "id", q.After)
	var es []Event
	query := "SELECT " + eventColumns + " FROM events" + c.where() + " ORDER BY received_at DESC, id DESC LIMIT ?"
	if err := s.db.SelectContext(ctx, &es, query, append(c.args, q.Limit)...); err != nil {
		return nil, fmt.Errorf("select events of account %d: %w", account, err)
	}
	return es, nil
}

// AccountEvent returns event id of account, or ErrNotFound.
func (s *Store) AccountEvent(ctx context.Context, account uint64, id string) (Event, error) {
	var e Event
	err := s.db.GetContext(ctx, &e, "SELECT "+eventColumns+" FROM events WHERE account_id = ? AND id = ?", account, id)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("select event %q: %w", id, err)
	}
	return e, nil
}
