// Package repository is webhookd's MySQL storage: the webhooks table the monolith writes, and
// the log of events, deliveries and attempts the worker keeps. It knows nothing of AMQP.
//
// Writes on the hot path are group-committed: concurrent callers share one transaction, and
// each call returns only once its rows are durable.
package repository

import (
	"context"
	"errors"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql" // the database/sql driver
	"github.com/jmoiron/sqlx"

	"github.com/webhookd/webhookd/internal/batch"
)

var timeUTC = time.UTC

// ErrNotFound is returned when a row asked for by id does not exist.
var ErrNotFound = errors.New("not found")

// Options tunes a Store.
type Options struct {
	// MaxOpenConns bounds the connection pool. Defaults to 16.
	MaxOpenConns int
	// Flushers is the number of group-commit transactions that may run at once per kind of
	// write. Defaults to 1: a second flusher that is idle takes whatever single item arrives,
	// so under load most commits carried one row (median 1, against 33 with one flusher), and
	// the record batches of one webhook waited on each other's lock of its webhooks row.
	// One flusher drained faster, with less database CPU and lower latency (./bench).
	Flushers int
	// MaxBatch bounds a group commit. Defaults to 256.
	MaxBatch int
	// RecordLinger is how long a group commit of outcomes waits for more while traffic is
	// light. Outcomes are off the way to the receiver, claims are on it: fewer commits of
	// outcomes keep the claims' commits quick (at 1,000 events/s, publish-to-receipt p50
	// 2.5 → 1.7 ms, ./bench latency). Defaults to 5ms; negative for none.
	RecordLinger time.Duration
	// ObserveBatch, if set, is told the size of every group commit.
	ObserveBatch func(kind string, size int)
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 16
	}
	if o.Flushers == 0 {
		o.Flushers = 1
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 256
	}
	if o.RecordLinger == 0 {
		o.RecordLinger = 5 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// claimOverhead is room left in a packet for an event's statement and its other columns.
const claimOverhead = 64 << 10

// Store reads webhooks and writes the delivery log.
type Store struct {
	db      *sqlx.DB
	now     func() time.Time
	claims  *batch.Batcher[claim]
	records *batch.Batcher[Outcome]
	// holds writes the rows of held deliveries (Outcome.Held), beside the outcomes' commits
	// rather than in their way: a fan-out under rate limits holds thousands at once.
	holds *batch.Batcher[Outcome]
	// advances moves ordered objects on past settled deliveries (ordered.go).
	advances *batch.Batcher[advance]
	// maxClaim is the largest event a claim can write: the server's max_allowed_packet less
	// room for the statement around it.
	maxClaim int
}

// Open connects to the database of dsn. It does not migrate.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	db.SetConnMaxLifetime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	var packet int
	if err := db.GetContext(ctx, &packet, "SELECT @@max_allowed_packet"); err != nil {
		db.Close()
		return nil, fmt.Errorf("read max_allowed_packet: %w", err)
	}
	s := &Store{db: db, now: opts.Now, maxClaim: packet - claimOverhead}
	observe := func(kind string) func(int) {
		if opts.ObserveBatch == nil {
			return nil
		}
		return func(n int) { opts.ObserveBatch(kind, n) }
	}
	// A batch's statement carries every item's bytes: it must fit the server's packet too.
	maxWeight := min(batch.DefaultMaxWeight, s.maxClaim)
	s.claims = batch.New(s.flushClaims, batch.Options[claim]{
		Flushers: opts.Flushers, Max: opts.MaxBatch, Observe: observe("claim"), MaxWeight: maxWeight,
		Weight: func(c *claim) int { return len(c.event.Data) + len(c.event.ID) + 256 },
	})
	s.advances = batch.New(s.flushAdvances, batch.Options[advance]{Flushers: opts.Flushers, Max: opts.MaxBatch})
	s.holds = batch.New(s.flushHolds, batch.Options[Outcome]{Flushers: opts.Flushers, Max: opts.MaxBatch, Observe: observe("hold")})
	s.records = batch.New(s.flushOutcomes, batch.Options[Outcome]{
		Flushers: opts.Flushers, Max: opts.MaxBatch, Observe: observe("record"), Linger: opts.RecordLinger, MaxWeight: maxWeight,
		Weight: func(o *Outcome) int { return len(o.ResponseBody) + len(o.Error) + 256 },
	})
	return s, nil
}

// DB is the underlying handle, for tests and tools.
func (s *Store) DB() *sqlx.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

// Close stops the group committers and closes the pool. Calls in progress fail.
func (s *Store) Close() error {
	s.claims.Close()
	s.records.Close()
	s.holds.Close()
	s.advances.Close()
	return s.db.Close()
}

func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
