//go:build faults

package faults

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// TestMariaDBDownThenKilled stops MariaDB for 20 seconds while events flow, then, with it
// back, kills the worker's database connections in the middle of its group commits.
func TestMariaDBDownThenKilled(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	w := bed.StartWorker(testbed.WorkerOptions{})
	flow := l.Flow(1200, 25*time.Millisecond)
	testbed.Eventually(t, 30*time.Second, "deliveries before the fault", func() bool { return l.Delivered() >= 40 })

	guardServers(t)
	stopMariaDB(t)
	down := time.Now()
	testbed.Eventually(t, 10*time.Second, "the worker to say it is not ready", func() bool { return !w.Worker.Ready() })
	// The fault lasts 20 seconds; events keep arriving meanwhile.
	<-time.After(20*time.Second - time.Since(down))
	// Attempts that were in flight when the server went may still finish in the first
	// seconds; after that no message may be taken.
	var during int
	for _, h := range l.Hits() {
		if h.At.After(down.Add(3 * time.Second)) {
			during++
		}
	}
	published := flow.Published()
	startMariaDB(t)
	t.Logf("MariaDB was down for %v; %d events published meanwhile", time.Since(down).Round(100*time.Millisecond), published)
	if during > 0 {
		t.Errorf("%d requests made while MariaDB was down: messages were taken without a database", during)
	}
	testbed.Eventually(t, 30*time.Second, "the worker to be ready again", w.Worker.Ready)

	kills := killMidBatch(t, bed, l, 3)
	t.Logf("killed %d connections in the middle of a transaction", kills)
	flow.Wait(t)
	l.Check(t, "mariadb down 20s + kill mid-batch", 2*time.Minute, Expect{DuplicatePercent: 2})
}

// killMidBatch catches the worker's group commits in the middle of their transactions and
// kills their connections, rounds times. It holds a lock on every row and gap of the
// deliveries table from a connection of its own, so that the worker's claims and records,
// which write there after writing the events or attempts, wait mid-transaction; it kills
// those that wait, and lets go.
func killMidBatch(t *testing.T, bed *testbed.Bed, l *Ledger, rounds int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A pool of its own, closed on the way out whatever happens: the server then rolls the
	// locking transaction back (a pooled connection would keep it open).
	lockDB, err := sql.Open("mysql", testbed.MySQLServer)
	if err != nil {
		t.Fatal(err)
	}
	defer lockDB.Close()
	lock, err := lockDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Raw(func(c any) error { return driver.ErrBadConn }) // discard, never reuse
	killed := 0
	for round := range rounds {
		before := l.Delivered()
		// The locking read competes with the worker's own transactions: when the server
		// picks it as a deadlock's victim, it is simply tried again.
		if !poll(30*time.Second, 50*time.Millisecond, func() bool {
			if _, err := lock.ExecContext(ctx, "START TRANSACTION"); err != nil {
				t.Fatal(err)
			}
			_, err := lock.ExecContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM `%s`.deliveries FOR UPDATE", bed.Name))
			var me *mysql.MySQLError
			if errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205) {
				lock.ExecContext(ctx, "ROLLBACK")
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
			return true
		}) {
			t.Fatal("could not lock the deliveries table within 30s")
		}
		var waiting []int64
		if !poll(20*time.Second, 10*time.Millisecond, func() bool {
			waiting = waitingThreads(t, ctx, bed.Name)
			return len(waiting) > 0
		}) {
			t.Fatalf("round %d: no group commit waiting mid-transaction within 20s; transactions: %v", round, transactions(ctx))
		}
		for _, id := range waiting {
			if _, err := root().ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err == nil {
				killed++
			}
		}
		if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		testbed.Eventually(t, 30*time.Second, fmt.Sprintf("deliveries to go on after kill round %d", round), func() bool {
			return l.Delivered() > before+10
		})
	}
	return killed
}

// transactions describes the server's open transactions, for a failure message.
func transactions(ctx context.Context) string {
	rows, err := root().QueryContext(ctx, `SELECT id, command, COALESCE(db, ''), COALESCE(state, ''), COALESCE(LEFT(info, 80), '')
		FROM information_schema.processlist WHERE db LIKE 'wt\\_%'`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var state, db, pstate, q string
		rows.Scan(&id, &state, &db, &pstate, &q)
		out = append(out, fmt.Sprintf("[%d %s db=%s %s: %s]", id, state, db, pstate, q))
	}
	return strings.Join(out, " ")
}

// waitingThreads returns the connections to database db that have been writing to the
// deliveries table for more than 200 ms: with every row and gap of it locked, those wait for
// the lock in the middle of their transaction. (information_schema.innodb_trx of MariaDB 10.11
// does not list them reliably; the process list does.)
func waitingThreads(t *testing.T, ctx context.Context, db string) []int64 {
	rows, err := root().QueryContext(ctx, `SELECT id FROM information_schema.processlist
		WHERE db = ? AND command = 'Query' AND time_ms > 200 AND info LIKE 'INSERT %INTO deliveries %'`, db)
	if err != nil {
		t.Fatalf("read the process list: %v", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		ids = append(ids, id)
	}
	return ids
}

// TestReadOnlyAfterPost makes the database read-only while the receiver handles a request,
// before it answers 200: the worker cannot record the outcome, so it must not ack the
// message. Once: the database turns writable again after 5 seconds and the same worker
// records it. Again: the worker is killed while the database is read-only, and the next one
// delivers it again and records it.
func TestReadOnlyAfterPost(t *testing.T) {
	bed := testbed.New(t)
	// read_only does not hold root: the worker logs in with an account of its own.
	dsn := dbUser(t, bed)
	l := NewLedger(t, bed, 2)
	p := StartProc(t, bed, ProcOptions{DSN: dsn})
	guardServers(t)

	var armed atomic.Bool
	var mu sync.Mutex
	var flipped chan string
	l.Respond(func(h Hit, r *http.Request) int {
		if armed.CompareAndSwap(true, false) {
			if err := setReadOnly(true); err != nil {
				t.Errorf("set read_only: %v", err)
			}
			mu.Lock()
			flipped <- h.DeliveryID
			mu.Unlock()
		}
		return http.StatusOK
	})
	arm := func() chan string {
		mu.Lock()
		defer mu.Unlock()
		flipped = make(chan string, 1)
		armed.Store(true)
		return flipped
	}
	status := func(id string) (string, int) {
		var d repository.Delivery
		if err := bed.Store.DB().Get(&d, "SELECT status, attempts FROM deliveries WHERE id=?", id); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		return d.Status, d.Attempts
	}
	// notRecorded checks, with the database read-only for a while, that the outcome of
	// delivery id is not recorded.
	notRecorded := func(id string) {
		t.Helper()
		// The fault lasts a few seconds, long enough for the worker's retries to fail.
		<-time.After(3 * time.Second)
		if s, n := status(id); s == repository.StatusSucceeded {
			t.Fatalf("delivery %s recorded %s (%d attempts) while the database is read-only", id, s, n)
		}
	}
	waitFlip := func(ch chan string) string {
		t.Helper()
		select {
		case id := <-ch:
			return id
		case <-time.After(30 * time.Second):
			t.Fatal("no request after arming the read-only switch")
			return ""
		}
	}

	// Once, with nothing else going on: the event's message must stay unacknowledged while
	// the outcome cannot be recorded, and the same worker records it once it can.
	l.Flow(100, 5*time.Millisecond).Wait(t)
	testbed.Eventually(t, 30*time.Second, "the first events delivered and recorded", func() bool {
		return l.Delivered() == 100*len(l.Hooks) &&
			bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded'") == 100*len(l.Hooks)
	})
	armed1 := arm()
	if err := l.Publish(l.NextID()); err != nil {
		t.Fatal(err)
	}
	id := waitFlip(armed1)
	flippedAt := time.Now()
	notRecorded(id)
	// The broker's counts of a quorum queue lag by up to 5 seconds: read them late enough in
	// the fault that they show the queue after the POST was answered.
	<-time.After(time.Until(flippedAt.Add(7 * time.Second)))
	qs, err := queues(bed.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if q := qs[bed.Queue]; q.Messages != 1 || q.Unacked != 1 || bed.QueueDepth(bed.Queue) != 0 {
		t.Errorf("work queue while delivery %s cannot be recorded: %d messages, %d unacked; want the event's message, unacked", id, q.Messages, q.Unacked)
	}
	<-time.After(time.Until(flippedAt.Add(8 * time.Second)))
	if err := setReadOnly(false); err != nil {
		t.Fatal(err)
	}
	writable := time.Now()
	testbed.Eventually(t, 30*time.Second, "the outcome recorded once the database is writable", func() bool {
		s, _ := status(id)
		return s == repository.StatusSucceeded
	})
	t.Logf("delivery %s recorded %v after the database became writable", id, time.Since(writable).Round(10*time.Millisecond))

	// Again, while events flow: the worker dies while it cannot record; the message goes
	// back to the queue and the next worker makes the delivery again and records it.
	flow := l.Flow(300, 20*time.Millisecond)
	before := l.Delivered()
	testbed.Eventually(t, 30*time.Second, "deliveries to go on", func() bool { return l.Delivered() > before+40 })
	id = waitFlip(arm())
	notRecorded(id)
	p.Kill()
	if err := setReadOnly(false); err != nil {
		t.Fatal(err)
	}
	StartProc(t, bed, ProcOptions{DSN: dsn})
	flow.Wait(t)
	l.Check(t, "read-only after POST", 90*time.Second, Expect{DuplicatePercent: 2})
	if s, _ := status(id); s != repository.StatusSucceeded {
		t.Errorf("delivery %s, unrecorded when its worker died: %s, want succeeded", id, s)
	}
}
