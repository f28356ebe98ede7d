//go:build faults

package faults

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/internal/testbed"
)

// The commands that stop and start the servers, as an operator here would run them.
var (
	mariadbStart = []string{"start-stop-daemon", "--start", "--oknodo", "--background",
		"--output", "/tmp/webhookd-faults-mariadbd.log", "--exec", "/usr/sbin/mariadbd", "--", "--user=mysql"}
	mariadbStop = []string{"mariadb-admin", "shutdown"}
)

// baselineMaxConnections is MariaDB's max_connections before the tests: a restarted server
// forgets a limit raised at run time (scripts/services.sh raises it), and gets it back.
var baselineMaxConnections int

var (
	rootOnce sync.Once
	rootPool *sql.DB
)

// root is a pool logged in as root on the server, without a database: for SET GLOBAL, KILL
// and the process list. database/sql replaces its connections after a restart.
func root() *sql.DB {
	rootOnce.Do(func() {
		db, err := sql.Open("mysql", testbed.MySQLServer)
		if err != nil {
			panic(err) // only a malformed DSN fails here
		}
		db.SetMaxOpenConns(4)
		rootPool = db
	})
	return rootPool
}

func noteBaseline() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := root().QueryRowContext(ctx, "SELECT @@GLOBAL.max_connections").Scan(&baselineMaxConnections); err != nil {
		return fmt.Errorf("read max_connections: %w", err)
	}
	return nil
}

// command runs a server tool and returns its output.
func command(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func rabbitmqctl(args ...string) (string, error) {
	return command(2*time.Minute, "rabbitmqctl", args...)
}

// poll checks cond every interval until it holds or timeout passes, and reports which.
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

func amqpUp() bool {
	conn, err := amqp.DialConfig(testbed.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func mariadbUp() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return root().PingContext(ctx) == nil
}

func mariadbRunning() bool {
	return exec.Command("pgrep", "-x", "mariadbd").Run() == nil
}

// restoreServers puts both servers back: RabbitMQ's application started, MariaDB running,
// writable, with its connection limit. It does nothing to a server that is already so.
func restoreServers() error {
	return errors.Join(restoreRabbitMQ(), restoreMariaDB())
}

func restoreRabbitMQ() error {
	if amqpUp() {
		return nil
	}
	if _, err := rabbitmqctl("start_app"); err != nil {
		// The node itself is down, not only its application.
		if _, err := command(time.Minute, "rabbitmq-server", "-detached"); err != nil {
			return err
		}
	}
	if !poll(2*time.Minute, 200*time.Millisecond, amqpUp) {
		return errors.New("RabbitMQ did not accept connections within 2m")
	}
	return nil
}

func restoreMariaDB() error {
	if !mariadbUp() {
		// A server still shutting down would make start-stop-daemon's --oknodo a no-op.
		if !poll(time.Minute, 100*time.Millisecond, func() bool { return !mariadbRunning() }) {
			return errors.New("mariadbd still running but not answering after 1m")
		}
		if _, err := command(time.Minute, mariadbStart[0], mariadbStart[1:]...); err != nil {
			return err
		}
		if !poll(2*time.Minute, 100*time.Millisecond, mariadbUp) {
			return errors.New("MariaDB did not answer within 2m of starting")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := root().ExecContext(ctx, "SET GLOBAL read_only = 0"); err != nil {
		return fmt.Errorf("set read_only=0: %w", err)
	}
	if baselineMaxConnections > 0 {
		if _, err := root().ExecContext(ctx, fmt.Sprintf("SET GLOBAL max_connections = %d", baselineMaxConnections)); err != nil {
			return fmt.Errorf("restore max_connections: %w", err)
		}
	}
	return nil
}

// guardServers restores both servers when t ends, before anything registered earlier (the
// test bed's cleanup needs them). Call it after the workers start and before the first fault.
func guardServers(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if err := restoreServers(); err != nil {
			t.Errorf("restore servers: %v", err)
		}
	})
}

// stopRabbitMQ stops RabbitMQ's application; the node keeps running and the queues on disk.
func stopRabbitMQ(t *testing.T) {
	t.Helper()
	if _, err := rabbitmqctl("stop_app"); err != nil {
		t.Fatalf("stop RabbitMQ: %v", err)
	}
}

func startRabbitMQ(t *testing.T) {
	t.Helper()
	if _, err := rabbitmqctl("start_app"); err != nil {
		t.Fatalf("start RabbitMQ: %v", err)
	}
	if !poll(2*time.Minute, 100*time.Millisecond, amqpUp) {
		t.Fatalf("RabbitMQ did not accept connections within 2m of start_app")
	}
}

func stopMariaDB(t *testing.T) {
	t.Helper()
	if _, err := command(2*time.Minute, mariadbStop[0], mariadbStop[1:]...); err != nil {
		t.Fatalf("stop MariaDB: %v", err)
	}
	if !poll(time.Minute, 100*time.Millisecond, func() bool { return !mariadbRunning() }) {
		t.Fatalf("mariadbd still running 1m after shutdown")
	}
}

func startMariaDB(t *testing.T) {
	t.Helper()
	if err := restoreMariaDB(); err != nil {
		t.Fatalf("start MariaDB: %v", err)
	}
}

// setReadOnly flips the server's read_only. Only accounts without READ ONLY ADMIN (not root)
// are held to it.
func setReadOnly(on bool) error {
	v := 0
	if on {
		v = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := root().ExecContext(ctx, fmt.Sprintf("SET GLOBAL read_only = %d", v))
	return err
}

// dbUser makes an account that can do anything in the bed's database and nothing more, so
// that read_only holds it and its connections are easy to find; it is dropped when t ends.
// It returns the DSN of the bed's database for that account.
func dbUser(t *testing.T, bed *testbed.Bed) string {
	t.Helper()
	user, password := bed.Name, "pw-"+bed.Name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, password),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%%'", bed.Name, user),
	} {
		if _, err := root().ExecContext(ctx, q); err != nil {
			t.Fatalf("create database user: %v", err)
		}
	}
	t.Cleanup(func() {
		root().Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", user))
	})
	return fmt.Sprintf("%s:%s@tcp(127.0.0.1:3306)/%s", user, password, bed.Name)
}

// rabbitQueue is a queue's depth as the broker counts it: ready plus unacknowledged.
type rabbitQueue struct {
	Messages, Unacked int
}

// queues returns the depth of every queue whose name starts with prefix.
func queues(prefix string) (map[string]rabbitQueue, error) {
	out, err := rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages", "messages_unacknowledged")
	if err != nil {
		return nil, err
	}
	qs := map[string]rabbitQueue{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 3 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		var q rabbitQueue
		fmt.Sscan(f[1], &q.Messages)
		fmt.Sscan(f[2], &q.Unacked)
		qs[f[0]] = q
	}
	return qs, nil
}
