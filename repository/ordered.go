package repository

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// ObjectKey is the key an object's ordered deliveries share: the first 16 bytes of the
// SHA-256 of the object id's JSON text.
func ObjectKey(objectID string) []byte {
	sum := sha256.Sum256([]byte(objectID))
	return sum[:16]
}

// Sequenced is one event as the sequencer read it, in publish order, with the ordered
// webhooks that get it.
type Sequenced struct {
	Event    Event
	Webhooks []uint64
}

// Sequence gives each ordered delivery of the events its place: the next sequence number of
// its (webhook, object), in the order of events. It stores the events (unclaimed: the work
// queue's copy still claims them) and a pending row per delivery, all in one transaction,
// and returns the deliveries that may go at once because every earlier one has settled.
// Deliveries sequenced already (a message given back after a lost channel) keep their place.
//
// due is when a delivery that must wait counts as overdue for the repair sweep; one that may
// go at once is due now.
func (s *Store) Sequence(ctx context.Context, events []Sequenced, due time.Time) ([]string, error) {
	var ready []string
	// Settling deliveries lock the same rows in another order (Advance).
	err := againOnDeadlock(func() error {
		return s.inTx(ctx, func(tx *sqlx.Tx) error {
			ready = ready[:0]
			return s.sequence(ctx, tx, events, due, &ready)
		})
	})
	return ready, err
}

type objectRef struct {
	webhook uint64
	key     string // ObjectKey as a string, to be a map key
}

type seqState struct {
	last, done int
	existed    bool
}

func (s *Store) sequence(ctx context.Context, tx *sqlx.Tx, events []Sequenced, due time.Time, ready *[]string) error {
	now := s.now().UTC()
	if err := insertUnclaimed(ctx, tx, events, now); err != nil {
		return err
	}
	// Lock every (webhook, object) of the batch first: a second sequencer, the one before a
	// lost channel, waits here, and then sees what this one wrote.
	states := map[objectRef]*seqState{}
	var refs []objectRef
	var ids []string
	for _, e := range events {
		key := string(ObjectKey(e.Event.ObjectID.String))
		for _, w := range e.Webhooks {
			r := objectRef{w, key}
			if states[r] == nil {
				states[r] = &seqState{}
				refs = append(refs, r)
			}
			ids = append(ids, DeliveryID(e.Event.ID, w))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := lockSequences(ctx, tx, refs, states); err != nil {
		return err
	}
	placed, err := sequencedAlready(ctx, tx, ids)
	if err != nil {
		return err
	}

	var places, rows strings.Builder
	var placeArgs, rowArgs []any
	for _, e := range events {
		key := string(ObjectKey(e.Event.ObjectID.String))
		for _, w := range e.Webhooks {
			id := DeliveryID(e.Event.ID, w)
			st := states[objectRef{w, key}]
			if at, ok := placed[id]; ok {
				// Placed by a sequencer that stopped before it acked: if it is first in
				// line and never attempted, it may not have been started either.
				if at.unstarted && at.sequence == st.done+1 {
					*ready = append(*ready, id)
				}
				continue
			}
			placed[id] = place{sequence: st.last + 1} // the same id twice in one batch gets one place
			st.last++
			dueAt := due.UTC()
			if st.last == st.done+1 {
				dueAt = now
				*ready = append(*ready, id)
			}
			if len(placeArgs) > 0 {
				places.WriteByte(',')
				rows.WriteByte(',')
			}
			places.WriteString("(?,?,?,?)")
			placeArgs = append(placeArgs, w, []byte(key), st.last, id)
			rows.WriteString("(?,?,?,'pending',0,?,?,?)")
			rowArgs = append(rowArgs, id, e.Event.ID, w, dueAt, now, now)
		}
	}
	if len(placeArgs) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO ordered_deliveries (webhook_id, object_key, sequence, delivery_id) VALUES "+places.String(), placeArgs...); err != nil {
		return fmt.Errorf("insert ordered deliveries: %w", err)
	}
	// A row the work queue's fan-out wrote first (a webhook it found ordered before this
	// sequencer did) keeps its outcome; only its due time follows its place.
	if _, err := tx.ExecContext(ctx, "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at) VALUES "+
		rows.String()+" ON DUPLICATE KEY UPDATE due_at = IF(status = 'pending' AND attempts = 0, VALUES(due_at), due_at)", rowArgs...); err != nil {
		return fmt.Errorf("insert ordered delivery rows: %w", err)
	}
	var seqs strings.Builder
	var seqArgs []any
	for _, r := range refs {
		if seqs.Len() > 0 {
			seqs.WriteByte(',')
		}
		seqs.WriteString("(?,?,?,?)")
		st := states[r]
		seqArgs = append(seqArgs, r.webhook, []byte(r.key), st.last, st.done)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO sequences (webhook_id, object_key, last_seq, done_seq) VALUES "+
		seqs.String()+" ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq)", seqArgs...); err != nil {
		return fmt.Errorf("update sequences: %w", err)
	}
	return nil
}

// insertUnclaimed stores the events that are not stored yet, with claim 0: the work queue's
// copy of each still claims it as new (flushClaims).
func insertUnclaimed(ctx context.Context, tx *sqlx.Tx, events []Sequenced, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	q, args := insertEvents(len(events), func(i int) (Event, uint64) { return events[i].Event, 0 }, now)
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("insert sequenced events: %w", err)
	}
	return nil
}

func lockSequences(ctx context.Context, tx *sqlx.Tx, refs []objectRef, states map[objectRef]*seqState) error {
	var q strings.Builder
	args := make([]any, 0, 2*len(refs))
	q.WriteString("SELECT webhook_id, object_key, last_seq, done_seq FROM sequences WHERE (webhook_id, object_key) IN (")
	for i, r := range refs {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?)")
		args = append(args, r.webhook, []byte(r.key))
	}
	q.WriteString(") FOR UPDATE")
	var rows []struct {
		Webhook uint64 `db:"webhook_id"`
		Key     []byte `db:"object_key"`
		Last    int    `db:"last_seq"`
		Done    int    `db:"done_seq"`
	}
	if err := tx.SelectContext(ctx, &rows, q.String(), args...); err != nil {
		return fmt.Errorf("lock sequences: %w", err)
	}
	for _, r := range rows {
		if st := states[objectRef{r.Webhook, string(r.Key)}]; st != nil {
			*st = seqState{last: r.Last, done: r.Done, existed: true}
		}
	}
	return nil
}

// place is a delivery's place as sequencedAlready found it.
type place struct {
	sequence int
	// unstarted is true while the delivery is pending and has no attempt.
	unstarted bool
}

// sequencedAlready returns the deliveries of ids that have a place, read with a lock so that
// it sees what a sequencer before this one committed.
func sequencedAlready(ctx context.Context, tx *sqlx.Tx, ids []string) (map[string]place, error) {
	q, args, err := sqlx.In(`SELECT o.delivery_id, o.sequence, d.status = 'pending' AND d.attempts = 0 AS unstarted
		FROM ordered_deliveries o JOIN deliveries d ON d.id = o.delivery_id WHERE o.delivery_id IN (?) LOCK IN SHARE MODE`, ids)
	if err != nil {
		return nil, fmt.Errorf("select ordered deliveries: %w", err)
	}
	var have []struct {
		ID        string `db:"delivery_id"`
		Sequence  int    `db:"sequence"`
		Unstarted bool   `db:"unstarted"`
	}
	if err := tx.SelectContext(ctx, &have, q, args...); err != nil {
		return nil, fmt.Errorf("select ordered deliveries: %w", err)
	}
	placed := make(map[string]place, len(have))
	for _, h := range have {
		placed[h.ID] = place{sequence: h.Sequence, unstarted: h.Unstarted}
	}
	return placed, nil
}

// Place is an ordered delivery's position.
type Place struct {
	Sequence int
	// Head is true once every earlier delivery of its (webhook, object) has settled.
	Head bool
}

// PlaceOf returns a delivery's place among its object's ordered deliveries, and false when it
// has none (its webhook was not ordered when its event came, or the event has no object id).
func (s *Store) PlaceOf(ctx context.Context, deliveryID string) (Place, bool, error) {
	var p struct {
		Webhook  uint64 `db:"webhook_id"`
		Key      []byte `db:"object_key"`
		Sequence int    `db:"sequence"`
		Done     int    `db:"done_seq"`
	}
	err := s.db.GetContext(ctx, &p, `SELECT o.webhook_id, o.object_key, o.sequence, s.done_seq
		FROM ordered_deliveries o JOIN sequences s ON s.webhook_id = o.webhook_id AND s.object_key = o.object_key
		WHERE o.delivery_id = ?`, deliveryID)
	if errors.Is(err, sql.ErrNoRows) {
		return Place{}, false, nil
	}
	if err != nil {
		return Place{}, false, fmt.Errorf("select place of %q: %w", deliveryID, err)
	}
	place := Place{Sequence: p.Sequence, Head: p.Done >= p.Sequence-1}
	if !place.Head {
		// done_seq is moved on after an outcome is recorded, in a transaction of its own: a
		// crash in between leaves it behind. The earlier deliveries themselves decide.
		var waiting int
		err := s.db.GetContext(ctx, &waiting, `SELECT COUNT(*) FROM ordered_deliveries o JOIN deliveries d ON d.id = o.delivery_id
			WHERE o.webhook_id = ? AND o.object_key = ? AND o.sequence > ? AND o.sequence < ? AND d.status = 'pending'`,
			p.Webhook, p.Key, p.Done, p.Sequence)
		if err != nil {
			return Place{}, false, fmt.Errorf("select deliveries before %q: %w", deliveryID, err)
		}
		place.Head = waiting == 0
	}
	return place, true, nil
}

// Advance moves a (webhook, object)'s settled mark past a delivery that has settled, and past
// the settled ones after it, and returns the delivery that is now first in line, due now, or
// "" when none waits. A delivery settled out of turn (a redelivery asked for) moves nothing
// until those before it have settled too. Concurrent calls share one transaction (one log
// flush), as outcomes do.
func (s *Store) Advance(ctx context.Context, deliveryID string) (string, error) {
	a := &advance{delivery: deliveryID}
	if err := s.advances.Do(ctx, a); err != nil {
		return "", err
	}
	return a.next, nil
}

// advance is one settled ordered delivery, and the delivery it lets go.
type advance struct {
	delivery, next string
}

// flushAdvances runs a batch of advances in one READ COMMITTED transaction: each statement
// sees what committed before it, not a snapshot from the batch's first read.
func (s *Store) flushAdvances(ctx context.Context, batch []*advance) error {
	return againOnDeadlock(func() error { return s.advanceAll(ctx, batch) })
}

func (s *Store) advanceAll(ctx context.Context, batch []*advance) error {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for _, a := range batch {
		if a.next, err = s.advanceIn(ctx, tx, a.delivery); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// advanceIn is Advance within tx.
func (s *Store) advanceIn(ctx context.Context, tx *sqlx.Tx, deliveryID string) (string, error) {
	var next string
	// The transaction reads committed rows (flushAdvances): once the lock below is taken, the
	// walk sees what a sequencer that held it meanwhile committed, so a delivery placed while
	// this one settled is not missed.
	var p struct {
		Webhook  uint64 `db:"webhook_id"`
		Key      []byte `db:"object_key"`
		Sequence int    `db:"sequence"`
		Done     int    `db:"done_seq"`
	}
	err := tx.GetContext(ctx, &p, `SELECT o.webhook_id, o.object_key, o.sequence, s.done_seq
		FROM ordered_deliveries o JOIN sequences s ON s.webhook_id = o.webhook_id AND s.object_key = o.object_key
		WHERE o.delivery_id = ? FOR UPDATE`, deliveryID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lock place of %q: %w", deliveryID, err)
	}
	done := p.Done
	if done >= p.Sequence {
		return "", nil
	}
	// Walk from the settled mark: every delivery up to the first pending one has settled.
	var after []struct {
		Sequence int    `db:"sequence"`
		ID       string `db:"delivery_id"`
		Status   string `db:"status"`
	}
	for {
		after = after[:0]
		err := tx.SelectContext(ctx, &after, `SELECT o.sequence, o.delivery_id, d.status
			FROM ordered_deliveries o JOIN deliveries d ON d.id = o.delivery_id
			WHERE o.webhook_id = ? AND o.object_key = ? AND o.sequence > ? ORDER BY o.sequence LIMIT 64`, p.Webhook, p.Key, done)
		if err != nil {
			return "", fmt.Errorf("select deliveries after %d: %w", done, err)
		}
		for _, a := range after {
			if a.Status != string(StatusPending) {
				done = a.Sequence
				continue
			}
			if a.Sequence < p.Sequence {
				return "", nil // settled out of turn: the first in line is still under way
			}
			next = a.ID
			break
		}
		if next != "" || len(after) < 64 {
			break
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sequences SET done_seq = ? WHERE webhook_id = ? AND object_key = ?", done, p.Webhook, p.Key); err != nil {
		return "", fmt.Errorf("advance sequence: %w", err)
	}
	if next != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE deliveries SET due_at = ? WHERE id = ? AND status = 'pending'", s.now().UTC(), next); err != nil {
			return "", fmt.Errorf("make %q due: %w", next, err)
		}
	}
	return next, nil
}

// AnyOrdered reports whether some enabled webhook is ordered.
func (s *Store) AnyOrdered(ctx context.Context) (bool, error) {
	var any bool
	if err := s.db.GetContext(ctx, &any, "SELECT EXISTS(SELECT 1 FROM webhooks WHERE ordered = 1 AND enabled = 1)"); err != nil {
		return false, fmt.Errorf("select ordered webhooks: %w", err)
	}
	return any, nil
}
