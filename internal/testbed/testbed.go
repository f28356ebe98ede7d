// Package testbed gives each integration test its own database, exchange and queues on the
// real MariaDB and RabbitMQ, a recording receiver, and a worker to run against them. Every
// name is unique to the test, so tests run in parallel, and cleanup removes them all.
package testbed

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// Servers' addresses; WEBHOOKD_TEST_AMQP_URL and WEBHOOKD_TEST_MYSQL_SERVER override them.
var (
	AMQPURL     = envOr("WEBHOOKD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	MySQLServer = envOr("WEBHOOKD_TEST_MYSQL_SERVER", "root@tcp(127.0.0.1:3306)/")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Bed is one test's share of the servers.
type Bed struct {
	T        testing.TB
	Name     string
	DSN      string
	Exchange string
	Queue    string
	Store    *repository.Store

	mu     sync.Mutex
	queues map[string]bool
	conn   *amqp.Connection
	ch     *amqp.Channel
}

// New makes a fresh database (migrated), and names an exchange and a work queue for t. It
// fails the test, never skips it, when the servers are not there; short mode skips it.
func New(t testing.TB) *Bed {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs RabbitMQ and MariaDB (run without -short)")
	}
	var b [5]byte
	rand.Read(b[:])
	name := "wt_" + hex.EncodeToString(b[:])
	bed := &Bed{
		T:        t,
		Name:     name,
		DSN:      MySQLServer + name,
		Exchange: name + ".events",
		Queue:    name,
		queues:   map[string]bool{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := repository.Migrate(ctx, bed.DSN); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	t.Cleanup(bed.dropDatabase)
	store, err := repository.Open(ctx, bed.DSN, repository.Options{MaxOpenConns: 8})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	bed.Store = store

	conn, err := amqp.Dial(AMQPURL)
	if err != nil {
		t.Fatalf("connect to RabbitMQ: %v", err)
	}
	bed.conn = conn
	t.Cleanup(bed.deleteTopology)
	bed.TrackLadder(nil)
	return bed
}

// TrackLadder notes the retry queues of ladder, and the hold queues, so that cleanup deletes
// them.
func (b *Bed) TrackLadder(ladder retry.Ladder) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queues[b.Queue] = true
	b.queues[b.Queue+".dead"] = true
	b.queues[b.Queue+".ordered"] = true
	for _, d := range ladder {
		b.queues[retry.QueueName(b.Queue, d)] = true
	}
	top := broker.Topology{Queue: b.Queue}
	for _, d := range broker.HoldDelays {
		b.queues[top.HoldQueue(d)] = true
	}
	b.queues[top.DueQueue()] = true
}

// TrackQueue notes another queue for cleanup.
func (b *Bed) TrackQueue(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queues[name] = true
}

func (b *Bed) dropDatabase() {
	db, err := sql.Open("mysql", MySQLServer)
	if err != nil {
		return
	}
	defer db.Close()
	db.Exec("DROP DATABASE IF EXISTS `" + b.Name + "`")
}

func (b *Bed) deleteTopology() {
	defer b.conn.Close()
	if b.conn.IsClosed() {
		conn, err := amqp.Dial(AMQPURL)
		if err != nil {
			return
		}
		b.conn = conn
	}
	ch, err := b.conn.Channel()
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for q := range b.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			ch, err = b.conn.Channel()
			if err != nil {
				return
			}
		}
	}
	ch.ExchangeDelete(b.Exchange, false, false)
}

// Channel returns a channel on the bed's own connection (not the worker's), reopened if a
// previous operation closed it.
func (b *Bed) Channel() *amqp.Channel {
	b.T.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn.IsClosed() {
		conn, err := amqp.Dial(AMQPURL)
		if err != nil {
			b.T.Fatalf("reconnect to RabbitMQ: %v", err)
		}
		b.conn = conn
		b.ch = nil
	}
	if b.ch == nil || b.ch.IsClosed() {
		ch, err := b.conn.Channel()
		if err != nil {
			b.T.Fatalf("open channel: %v", err)
		}
		if err := ch.Confirm(false); err != nil {
			b.T.Fatalf("confirm.select: %v", err)
		}
		b.ch = ch
	}
	return b.ch
}

// DeclareTopology declares the exchange, the work queue bound to it and the dead queue
// exactly as the worker does, so that events published before a worker starts are kept.
func (b *Bed) DeclareTopology(queueType string) {
	b.T.Helper()
	t := broker.Topology{Exchange: b.Exchange, Queue: b.Queue, QueueType: queueType}
	if err := t.Declare(b.Channel()); err != nil {
		b.T.Fatalf("declare topology: %v", err)
	}
}

// Publish publishes a persistent message and waits for its confirm.
func (b *Bed) Publish(exchange, key string, msg amqp.Publishing) {
	b.T.Helper()
	msg.DeliveryMode = amqp.Persistent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := b.Channel().PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		b.T.Fatalf("publish: %v", err)
	}
	ok, err := conf.WaitContext(ctx)
	if err != nil || !ok {
		b.T.Fatalf("publish %s: not confirmed (ok=%v, err=%v)", key, ok, err)
	}
}

// PublishEvent publishes an event body to the bed's exchange with routing key key.
func (b *Bed) PublishEvent(key, body string) {
	b.T.Helper()
	b.Publish(b.Exchange, key, amqp.Publishing{ContentType: "application/json", Body: []byte(body)})
}

// Event builds an event body; extra is spliced in as more JSON fields (without braces).
func Event(id, name string, account int, extra string) string {
	s := fmt.Sprintf(`{"id":%q,"event":%q,"accountId":%d`, id, name, account)
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// Webhook is a row to insert.
type Webhook struct {
	Account uint64
	Project uint64 // 0: every project
	Event   string
	URL     string
	Format  string // default json
	Token   string
	Enabled *bool // default true
}

// AddWebhook inserts a webhook and returns its id.
func (b *Bed) AddWebhook(w Webhook) uint64 {
	b.T.Helper()
	if w.Format == "" {
		w.Format = "json"
	}
	if w.Token == "" {
		w.Token = "token-" + b.Name
	}
	enabled := w.Enabled == nil || *w.Enabled
	project := sql.NullInt64{Int64: int64(w.Project), Valid: w.Project != 0}
	res, err := b.Store.DB().Exec("INSERT INTO webhooks (account_id, project_id, event, url, format, token, enabled) VALUES (?,?,?,?,?,?,?)",
		w.Account, project, w.Event, w.URL, w.Format, w.Token, enabled)
	if err != nil {
		b.T.Fatalf("insert webhook: %v", err)
	}
	id, _ := res.LastInsertId()
	return uint64(id)
}

// Exec runs a statement on the bed's database.
func (b *Bed) Exec(query string, args ...any) {
	b.T.Helper()
	if _, err := b.Store.DB().Exec(query, args...); err != nil {
		b.T.Fatalf("exec %q: %v", query, err)
	}
}

// Count runs a COUNT query on the bed's database.
func (b *Bed) Count(query string, args ...any) int {
	b.T.Helper()
	var n int
	if err := b.Store.DB().Get(&n, query, args...); err != nil {
		b.T.Fatalf("count %q: %v", query, err)
	}
	return n
}

// QueueDepth is the number of ready messages in queue.
func (b *Bed) QueueDepth(queue string) int {
	b.T.Helper()
	q, err := b.Channel().QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		b.T.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// Get takes one message off queue (auto-acked), waiting up to timeout for one to arrive.
func (b *Bed) Get(queue string, timeout time.Duration) amqp.Delivery {
	b.T.Helper()
	var msg amqp.Delivery
	Eventually(b.T, timeout, "a message in "+queue, func() bool {
		d, ok, err := b.Channel().Get(queue, true)
		if err != nil {
			b.T.Fatalf("basic.get %s: %v", queue, err)
		}
		msg = d
		return ok
	})
	return msg
}

// Eventually polls cond every 10 ms until it holds, failing the test after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// Unique returns a name unique to this run, with prefix.
func Unique(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Lines splits and trims.
func Lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }
