package repository

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/webhookd/webhookd/formatter"
)

// Event is an event as received, kept so that it can be redelivered or replayed.
type Event struct {
	ID        string        `db:"id"`
	Name      string        `db:"event"`
	AccountID uint64        `db:"account_id"`
	ProjectID sql.NullInt64 `db:"project_id"`
	// ObjectID is the JSON text of the object id (a number or a quoted string), if any.
	ObjectID sql.NullString `db:"object_id"`
	// OccurredAt is the RFC 3339 time of the event, as received or as stamped on arrival.
	OccurredAt string `db:"occurred_at"`
	// Data is the event's data as received, JSON bytes.
	Data       []byte    `db:"data"`
	ReceivedAt time.Time `db:"received_at"`
}

// Payload is the content of a delivery's body, field for field from the event as received:
// what every format renders (contract §3).
func (e Event) Payload() formatter.Event {
	fe := formatter.Event{Name: e.Name, ID: e.ID, AccountID: e.AccountID, OccurredAt: e.OccurredAt, Data: e.Data}
	if e.ProjectID.Valid {
		p := uint64(e.ProjectID.Int64)
		fe.ProjectID = &p
	}
	if e.ObjectID.Valid {
		fe.ObjectID = json.RawMessage(e.ObjectID.String)
	}
	return fe
}

// DeliveryID is the id of the delivery of event eventID to webhook webhookID: the same pair
// always gets the same id, 32 lower-case hex digits.
func DeliveryID(eventID string, webhookID uint64) string {
	h := sha256.New()
	h.Write([]byte(eventID))
	h.Write([]byte{0})
	h.Write(strconv.AppendUint(nil, webhookID, 10))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

type claim struct {
	event Event
	// tag marks the event row this claim inserts. It is chosen once per claim, so that a
	// claim flushed again after a commit whose answer was lost still knows its own row.
	tag   uint64
	isNew bool
}

// Claim records ev and reports whether its id was new. For an id already recorded nothing
// is written: the unique key, not a prior check, decides which of two concurrent copies owns
// the event. The event's deliveries get their rows with their first outcome (Record).
//
// An event larger than the server accepts in one packet fails with ErrTooLarge: it will never
// be written.
func (s *Store) Claim(ctx context.Context, ev Event) (bool, error) {
	if n := len(ev.Data) + len(ev.ID) + len(ev.ObjectID.String); n > s.maxClaim {
		return false, fmt.Errorf("%w: event of %d bytes, the database takes at most %d (max_allowed_packet)", ErrTooLarge, n, s.maxClaim)
	}
	var token [8]byte
	rand.Read(token[:])
	c := &claim{event: ev, tag: binary.BigEndian.Uint64(token[:])>>1 | 1} // never 0: unclaimed
	if err := s.claims.Do(ctx, c); err != nil {
		return false, err
	}
	return c.isNew, nil
}

// flushClaims inserts a batch of events in one statement. A single statement commits on its
// own, so the usual batch costs one round trip and one log flush.
func (s *Store) flushClaims(ctx context.Context, batch []*claim) error {
	q, args := insertEvents(len(batch), func(i int) (Event, uint64) { return batch[i].event, batch[i].tag }, s.now().UTC())
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == int64(len(batch)) {
		// INSERT IGNORE counts only the rows it inserted: every id is new (and none twice in
		// the batch), so the usual case needs no SELECT.
		for _, c := range batch {
			c.isNew = true
		}
		return nil
	}
	ids := make([]any, 0, len(batch))
	for _, c := range batch {
		ids = append(ids, c.event.ID)
	}
	if err := takeUnclaimed(ctx, s.db, batch, ids); err != nil {
		return err
	}
	query, inArgs, err := sqlx.In("SELECT id, claim FROM events WHERE id IN (?)", ids)
	if err != nil {
		return fmt.Errorf("select claimed events: %w", err)
	}
	var rows []struct {
		ID    string `db:"id"`
		Claim uint64 `db:"claim"`
	}
	if err := s.db.SelectContext(ctx, &rows, query, inArgs...); err != nil {
		return fmt.Errorf("select claimed events: %w", err)
	}
	owner := make(map[string]uint64, len(rows))
	for _, r := range rows {
		owner[r.ID] = r.Claim
	}
	for _, c := range batch {
		// Two copies of one id in the same batch: the row's tag names the owner.
		c.isNew = owner[c.event.ID] == c.tag
	}
	return nil
}

// insertEvents is the INSERT IGNORE of n events, event(i) giving each with its claim tag (0:
// not claimed yet), received now unless stamped already.
func insertEvents(n int, event func(i int) (Event, uint64), now time.Time) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, n*9)
	q.WriteString("INSERT IGNORE INTO events (id, event, account_id, project_id, object_id, occurred_at, data, received_at, claim) VALUES ")
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?)")
		e, tag := event(i)
		if e.ReceivedAt.IsZero() {
			e.ReceivedAt = now
		}
		args = append(args, e.ID, e.Name, e.AccountID, e.ProjectID, e.ObjectID, e.OccurredAt, e.Data, e.ReceivedAt, tag)
	}
	return q.String(), args
}

// takeUnclaimed claims the events of batch that the ordering sequencer stored first, with
// claim 0 (Sequence): each is still new to the work queue. Of two copies of an id in one
// batch, the first takes it.
func takeUnclaimed(ctx context.Context, db *sqlx.DB, batch []*claim, ids []any) error {
	var q strings.Builder
	args := make([]any, 0, 3*len(batch))
	q.WriteString("UPDATE events SET claim = ELT(FIELD(id")
	for range batch {
		q.WriteString(",?")
	}
	args = append(args, ids...)
	q.WriteString(")")
	for _, c := range batch {
		q.WriteString(",?")
		args = append(args, c.tag)
	}
	q.WriteString(") WHERE claim = 0 AND id IN (?")
	q.WriteString(strings.Repeat(",?", len(batch)-1))
	q.WriteString(")")
	args = append(args, ids...)
	if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("claim sequenced events: %w", err)
	}
	return nil
}

// GetEvent returns the stored event with id, or ErrNotFound.
func (s *Store) GetEvent(ctx context.Context, id string) (Event, error) {
	var e Event
	err := s.db.GetContext(ctx, &e,
		"SELECT id, event, account_id, project_id, object_id, occurred_at, data, received_at FROM events WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Event{}, fmt.Errorf("select event %q: %w", id, err)
	}
	return e, nil
}
