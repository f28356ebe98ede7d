package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webhookd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "webhookd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build webhookd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// webhookd runs the binary with env (on top of a clean WEBHOOKD_ environment) and returns its
// output and exit code.
func webhookd(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("run webhookd %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// bedEnv is the environment of a webhookd command on bed's database and queues.
func bedEnv(bed *testbed.Bed) []string {
	return []string{
		"WEBHOOKD_AMQP_URL=" + testbed.AMQPURL,
		"WEBHOOKD_MYSQL_DSN=" + bed.DSN,
		"WEBHOOKD_EXCHANGE=" + bed.Exchange,
		"WEBHOOKD_QUEUE=" + bed.Queue,
		bed.RetryDelaysEnv(retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond}),
	}
}

func TestHelpListsCommandsAndSettings(t *testing.T) {
	t.Parallel()
	out, _, code := webhookd(t, nil, "help")
	if code != 0 {
		t.Fatalf("help exit code %d", code)
	}
	for _, want := range []string{"run", "migrate", "emit", "receive", "redeliver", "replay", "status", "api", "token",
		"WEBHOOKD_API_ADDR", "127.0.0.1:8070", "WEBHOOKD_API_SECRET",
		"WEBHOOKD_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "WEBHOOKD_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/webhookd",
		"WEBHOOKD_EXCHANGE", "WEBHOOKD_QUEUE", "WEBHOOKD_RETRY_DELAYS", "1m,5m,10m", "WEBHOOKD_HTTP_TIMEOUT",
		"WEBHOOKD_CONCURRENCY", "WEBHOOKD_PREFETCH", "WEBHOOKD_DISABLE_AFTER", "WEBHOOKD_RETENTION", "720h",
		"WEBHOOKD_MAX_EVENT_BYTES", "WEBHOOKD_QUEUE_TYPE", "WEBHOOKD_ALLOW_PRIVATE_NETWORKS",
		"WEBHOOKD_ADMIN_ADDR", "127.0.0.1:9090", "WEBHOOKD_SHUTDOWN_TIMEOUT"} {
		if !strings.Contains(out, want) {
			t.Errorf("help does not mention %q", want)
		}
	}
}

func TestBadSettingStopsAtStart(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, name string }{
		{"WEBHOOKD_HTTP_TIMEOUT=soon", "WEBHOOKD_HTTP_TIMEOUT"},
		{"WEBHOOKD_RETRY_DELAYS=1m,-5m", "WEBHOOKD_RETRY_DELAYS"},
		{"WEBHOOKD_RETRY_DELAYS=1m,x", "WEBHOOKD_RETRY_DELAYS"},
		{"WEBHOOKD_QUEUE_TYPE=stream", "WEBHOOKD_QUEUE_TYPE"},
		{"WEBHOOKD_CONCURRENCY=0", "WEBHOOKD_CONCURRENCY"},
		{"WEBHOOKD_PREFETCH=-1", "WEBHOOKD_PREFETCH"},
		{"WEBHOOKD_ALLOW_PRIVATE_NETWORKS=maybe", "WEBHOOKD_ALLOW_PRIVATE_NETWORKS"},
		{"WEBHOOKD_MYSQL_DSN=nonsense", "WEBHOOKD_MYSQL_DSN"},
		{"WEBHOOKD_AMQP_URL=http://x", "WEBHOOKD_AMQP_URL"},
		{"WEBHOOKD_AMQP_URL=amqp://a/,http://x", "WEBHOOKD_AMQP_URL"},
		{"WEBHOOKD_REPAIR_AFTER=0s", "WEBHOOKD_REPAIR_AFTER"},
		{"WEBHOOKD_ADMIN_ADDR=nocolon", "WEBHOOKD_ADMIN_ADDR"},
		{"WEBHOOKD_DISABLE_AFTER=-1", "WEBHOOKD_DISABLE_AFTER"},
		{"WEBHOOKD_MAX_EVENT_BYTES=1", "WEBHOOKD_MAX_EVENT_BYTES"},
	}
	for _, tt := range tests {
		_, stderr, code := webhookd(t, []string{tt.env}, "run")
		if code != 2 || !strings.Contains(stderr, tt.name) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 naming %s", tt.env, code, stderr, tt.name)
		}
	}
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	for i := 0; i < 2; i++ {
		if out, stderr, code := webhookd(t, bedEnv(bed), "migrate"); code != 0 {
			t.Fatalf("migrate run %d: exit %d: %s %s", i+1, code, out, stderr)
		}
	}
	files, _ := filepath.Glob("repository/migrations/*.sql")
	if n := bed.Count("SELECT COUNT(*) FROM schema_migrations"); n != len(files) || n < 2 {
		t.Errorf("schema_migrations rows = %d, want one per migration (%d)", n, len(files))
	}
}

// A database made by the first migration is upgraded in place: its ids compare exactly and
// its pending deliveries get a due time.
func TestMigrateUpgradesInPlace(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	// Back to the schema of migration 001, with a pending delivery and an event "x".
	bed.Exec("DROP TABLE events, deliveries, attempts, webhooks")
	bed.Exec("DELETE FROM schema_migrations WHERE version <> '001_init'")
	first, err := os.ReadFile("repository/migrations/001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range strings.Split(string(first), ";\n") {
		if strings.Contains(stmt, "CREATE TABLE") {
			bed.Exec(stmt)
		}
	}
	bed.Exec("INSERT INTO events (id, event, account_id, occurred_at, data, received_at) VALUES ('x', 'A.B', 1, 'now', '{}', NOW())")
	bed.Exec("INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, created_at, updated_at) VALUES ('d', 'x', 1, 'pending', 1, NOW(), NOW())")
	if out, stderr, code := webhookd(t, bedEnv(bed), "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d: %s %s", code, out, stderr)
	}
	bed.Exec("INSERT INTO events (id, event, account_id, occurred_at, data, received_at) VALUES ('x ', 'A.B', 1, 'now', '{}', NOW())")
	if n := bed.Count("SELECT COUNT(*) FROM events WHERE id IN ('x', 'x ')"); n != 2 {
		t.Errorf("events x and 'x ' = %d rows, want 2", n)
	}
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE id = 'd' AND due_at IS NOT NULL"); n != 1 {
		t.Errorf("pending delivery without a due time after the upgrade")
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestEmitAndReceive(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	addr := freeAddr(t)
	const token = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	recv := exec.Command(binary, "receive", "--addr", addr, "--token", token)
	var out lockedBuffer
	recv.Stdout = &out
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Process.Kill(); recv.Wait() })
	testbed.Eventually(t, 10*time.Second, "the receiver to listen", func() bool {
		return strings.Contains(out.String(), "listening")
	})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://" + addr + "/hooks", Token: token})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://" + addr + "/plain", Token: "plain"})
	bed.StartWorker(testbed.WorkerOptions{})
	stdout, stderr, code := webhookd(t, bedEnv(bed), "emit", "TASK.CREATED", "--account", "1", "--object", "42", "--data", `{"title":"Fix the roof","n":12345678901234567890}`)
	if code != 0 || !strings.Contains(stdout, "published TASK.CREATED") {
		t.Fatalf("emit: exit %d, %s %s", code, stdout, stderr)
	}
	testbed.Eventually(t, 20*time.Second, "two webhooks printed by the receiver", func() bool {
		return strings.Count(out.String(), "--- ") == 2
	})
	text := out.String()
	for _, want := range []string{"X-Webhook-Signature: valid", "webhook-signature: valid", "X-Webhook-Signature: INVALID",
		`"objectId":42`, `"data":{"title":"Fix the roof","n":12345678901234567890}`} {
		if !strings.Contains(text, want) {
			t.Errorf("receiver output lacks %q:\n%s", want, text)
		}
	}
}

// TestRedeliverForms exercises every form of `webhookd redeliver` and the raw message.
func TestRedeliverForms(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	failing := true
	var mu sync.Mutex
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/down" && failing {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	up := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/up"})
	down := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/down"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{100 * time.Millisecond, 200 * time.Millisecond}})
	env := bedEnv(bed)
	bed.PublishEvent("TASK.CREATED", testbed.Event("e1", "TASK.CREATED", 1, ""))
	bed.PublishEvent("TASK.CREATED", testbed.Event("e2", "TASK.CREATED", 1, ""))
	testbed.Eventually(t, 20*time.Second, "2 succeeded and 2 failed deliveries", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded'") == 2 &&
			bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='failed' AND attempts=3") == 2
	})

	// By id: the delivery keeps its id and continues the attempt count.
	id := repository.DeliveryID("e1", up)
	out, _, code := webhookd(t, env, "redeliver", id)
	if code != 0 || !strings.Contains(out, "1 redeliveries") {
		t.Fatalf("redeliver by id: exit %d: %s", code, out)
	}
	reqs := rc.Wait(t, "/up", 3, 20*time.Second)
	last := reqs[2]
	if last.Header.Get("X-Webhook-Delivery") != id || last.Header.Get("X-Webhook-Attempt") != "2" {
		t.Errorf("redelivery: delivery %s attempt %s, want %s attempt 2", last.Header.Get("X-Webhook-Delivery"), last.Header.Get("X-Webhook-Attempt"), id)
	}

	// Dry run counts only.
	out, _, _ = webhookd(t, env, "redeliver", "--webhook", fmt.Sprint(down), "--status", "failed", "--dry-run")
	if !strings.Contains(out, "2 redeliveries (dry run: true)") {
		t.Errorf("dry run printed %q", out)
	}
	if n := len(rc.Requests("/down")); n != 6 {
		t.Errorf("after dry run /down got %d requests, want 6", n)
	}

	// By webhook and status: the redelivery fails once more and climbs the ladder again.
	mu.Lock()
	failing = false
	mu.Unlock()
	out, _, code = webhookd(t, env, "redeliver", "--webhook", fmt.Sprint(down), "--status", "failed",
		"--since", time.Now().Add(-time.Hour).Format(time.RFC3339), "--until", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "2 redeliveries") {
		t.Fatalf("redeliver by webhook: exit %d: %s", code, out)
	}
	testbed.Eventually(t, 20*time.Second, "the failed deliveries to succeed on attempt 4", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id=? AND status='succeeded' AND attempts=4", down) == 2
	})

	// By event: every delivery of e2.
	out, _, code = webhookd(t, env, "redeliver", "--event", "e2")
	if code != 0 || !strings.Contains(out, "2 redeliveries") {
		t.Fatalf("redeliver by event: exit %d: %s", code, out)
	}
	testbed.Eventually(t, 20*time.Second, "e2 redelivered to both", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='e2' AND status='succeeded' AND attempts IN (2,5)") == 2
	})

	// The raw message the monolith may publish.
	raw := repository.DeliveryID("e1", down)
	bed.Publish("", bed.Queue, amqp.Publishing{Type: broker.TypeRedeliver, Body: []byte(`{"redeliver":"` + raw + `"}`)})
	testbed.Eventually(t, 20*time.Second, "the raw redelivery", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE id=? AND attempts=5", raw) == 1
	})

	// A deleted webhook gets no redelivery.
	bed.Exec("DELETE FROM webhooks WHERE id=?", up)
	out, _, _ = webhookd(t, env, "redeliver", "--event", "e1")
	if !strings.Contains(out, "1 redeliveries") {
		t.Errorf("redeliver after deleting a webhook printed %q, want 1", out)
	}
	if _, _, code := webhookd(t, env, "redeliver"); code != 2 {
		t.Errorf("redeliver without arguments: exit %d, want 2", code)
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	off := false
	late := bed.AddWebhook(testbed.Webhook{Account: 1, Project: 3, Event: "TASK.CREATED", URL: rc.URL + "/late", Enabled: &off})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/on"})
	bed.StartWorker(testbed.WorkerOptions{})
	since := time.Now().Add(-time.Minute)
	bed.PublishEvent("TASK.CREATED", testbed.Event("p3a", "TASK.CREATED", 1, `"projectId":3`))
	bed.PublishEvent("TASK.CREATED", testbed.Event("p3b", "TASK.CREATED", 1, `"projectId":3`))
	bed.PublishEvent("TASK.CREATED", testbed.Event("p4", "TASK.CREATED", 1, `"projectId":4`))
	bed.PublishEvent("TASK.CREATED", testbed.Event("other", "TASK.CREATED", 2, `"projectId":3`))
	rc.Wait(t, "/on", 3, 20*time.Second)
	bed.Exec("UPDATE webhooks SET enabled=1 WHERE id=?", late)

	env := bedEnv(bed)
	out, _, code := webhookd(t, env, "replay", "--webhook", fmt.Sprint(late), "--since", since.Format(time.RFC3339), "--dry-run")
	if code != 0 || !strings.Contains(out, "2 replayed events (dry run: true)") {
		t.Fatalf("replay dry run: exit %d: %q", code, out)
	}
	out, _, code = webhookd(t, env, "replay", "--webhook", fmt.Sprint(late), "--since", since.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "2 replayed events") {
		t.Fatalf("replay: exit %d: %q", code, out)
	}
	reqs := rc.Wait(t, "/late", 2, 20*time.Second)
	got := map[string]bool{}
	for _, r := range reqs {
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		sc.Scan()
		got[sc.Text()] = true
		if r.Header.Get("X-Webhook-Attempt") != "1" {
			t.Errorf("replayed attempt = %s, want 1", r.Header.Get("X-Webhook-Attempt"))
		}
	}
	for _, id := range []string{"p3a", "p3b"} {
		found := false
		for body := range got {
			found = found || strings.Contains(body, `"eventId":"`+id+`"`)
		}
		if !found {
			t.Errorf("event %s not replayed; got %v", id, got)
		}
	}
	// The receiver has answered; the outcomes are committed a moment later.
	testbed.Eventually(t, 20*time.Second, "the replayed deliveries recorded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND status = 'succeeded'", late) == 2
	})
	out, _, _ = webhookd(t, env, "replay", "--webhook", fmt.Sprint(late), "--since", since.Format(time.RFC3339))
	if !strings.Contains(out, "0 replayed events") {
		t.Errorf("second replay printed %q, want 0", out)
	}
	if _, _, code := webhookd(t, env, "replay", "--webhook", fmt.Sprint(late)); code != 2 {
		t.Errorf("replay without --since: exit %d, want 2", code)
	}
}
