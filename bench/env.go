package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // the database/sql driver
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/retry"
)

// The servers; BENCH_AMQP_URL and BENCH_MYSQL_SERVER override them.
var (
	amqpURL     = envOr("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	mysqlServer = envOr("BENCH_MYSQL_SERVER", "root@tcp(127.0.0.1:3306)/")
)

// ladder is the retry ladder every bench worker runs with (webhookd's default), so that cleanup
// knows the names of the TTL queues the worker declares.
var ladder = retry.Ladder{time.Minute, 5 * time.Minute, 10 * time.Minute}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanups runs registered cleanups once, last registered first, also when the bench is
// interrupted.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// env is one scenario's share of the servers: its own database (migrated by `webhookd
// migrate`), exchange and work queue. close deletes them all, the worker's dead and retry
// queues included.
type env struct {
	b         *bench
	name      string
	dsn       string
	exchange  string
	queue     string
	queueType string
	db        *sql.DB
	closeOnce sync.Once
}

// newEnv makes a scenario's database, names its exchange and queue, and registers their
// deletion. withDB false skips the database (the floor needs none).
func (b *bench) newEnv(ctx context.Context, tag, queueType string, withDB bool) (*env, error) {
	b.envCount++
	name := "bench_" + b.runID + "_" + strconv.Itoa(b.envCount) + tag
	e := &env{b: b, name: name, dsn: mysqlServer + name, exchange: name + ".events", queue: name, queueType: queueType}
	b.cleanups.add(e.close)
	if !withDB {
		return e, nil
	}
	cmd := exec.CommandContext(ctx, b.bin, "migrate")
	cmd.Env = workerEnv(map[string]string{"MYSQL_DSN": e.dsn})
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("webhookd migrate %s: %v: %s", name, err, out)
	}
	db, err := sql.Open("mysql", e.dsn+"?parseTime=true")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	db.SetMaxOpenConns(4)
	e.db = db
	return e, nil
}

// close drops the database and deletes the exchange and every queue of the scenario.
func (e *env) close() {
	e.closeOnce.Do(func() {
		if e.db != nil {
			e.db.Close()
		}
		if db, err := sql.Open("mysql", mysqlServer); err == nil {
			drop := "DROP DATABASE IF EXISTS `" + e.name + "`"
			if _, err := db.Exec(drop); err != nil {
				// The server may be restarting: wait for it rather than leave the database.
				waitServices(context.Background(), 30*time.Second)
				if _, err := db.Exec(drop); err != nil {
					fmt.Fprintf(os.Stderr, "bench: drop database %s: %v\n", e.name, err)
				}
			}
			db.Close()
		}
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: cleanup %s: %v\n", e.name, err)
			return
		}
		defer conn.Close()
		queues := []string{e.queue, e.queue + ".dead"}
		for _, d := range ladder.Delays() {
			queues = append(queues, retry.QueueName(e.queue, d))
		}
		for _, d := range broker.HoldDelays {
			queues = append(queues, broker.Topology{Queue: e.queue}.HoldQueue(d))
		}
		queues = append(queues, broker.Topology{Queue: e.queue}.DueQueue())
		for _, q := range queues {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			ch.QueueDelete(q, false, false, false)
			ch.Close()
		}
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(e.exchange, false, false)
			ch.Close()
		}
	})
}

// declare declares the exchange and queues with the worker's own code, so that a backlog
// published before the worker starts is kept, in a queue the worker then finds as it would
// have made it.
func (e *env) declare() error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	t := broker.Topology{Exchange: e.exchange, Queue: e.queue, QueueType: e.queueType, Ladder: ladder}
	return t.Declare(ch)
}

// addWebhooks inserts n webhooks of account for TASK.CREATED pointing at url.
func (e *env) addWebhooks(ctx context.Context, account, n int, url string) error {
	for done := 0; done < n; {
		batch := min(n-done, 500)
		q := "INSERT INTO webhooks (account_id, event, url, format, token) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?,'TASK.CREATED',?,'json',?),", batch), ",")
		args := make([]any, 0, 3*batch)
		for range batch {
			args = append(args, account, url, benchToken)
		}
		if _, err := e.db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("insert webhooks: %w", err)
		}
		done += batch
	}
	return nil
}

// count runs a COUNT query on the scenario's database.
func (e *env) count(ctx context.Context, q string, args ...any) (int, error) {
	var n int
	err := e.db.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// waitCount waits until the COUNT query q reaches want, and reports the last count.
func (e *env) waitCount(ctx context.Context, want int, timeout time.Duration, q string, args ...any) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := e.count(ctx, q, args...)
		if err != nil || n >= want || time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// workerEnv is the environment of a webhookd process: the bench's own environment without any
// WEBHOOKD_ setting, plus settings (names without the prefix).
func workerEnv(settings map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") {
			out = append(out, kv)
		}
	}
	for k, v := range settings {
		out = append(out, "WEBHOOKD_"+k+"="+v)
	}
	return out
}

// waitServices waits up to timeout for MariaDB and RabbitMQ to answer: other work on the
// machine may be restarting them.
func waitServices(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := pingServices(ctx)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func pingServices(ctx context.Context) error {
	db, err := sql.Open("mysql", mysqlServer)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("mariadb: %w", err)
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	return conn.Close()
}
