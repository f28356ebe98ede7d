package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// TestStatus runs `webhookd status` against the real services: the queues' depths and the
// work queue's consumer from the broker; the last hour's deliveries by outcome, the oldest
// overdue delivery, disabled webhooks and open breakers from the delivery log.
func TestStatus(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		if r.URL.Path == "/down" {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/up"})
	down := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/down"})
	off := false
	gone := bed.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: "https://gone.example/hooks", Enabled: &off})
	bed.Exec("UPDATE webhooks SET disabled_reason = 'endpoint answered 410 Gone' WHERE id = ?", gone)
	broken := bed.AddWebhook(testbed.Webhook{Account: 3, Event: "TASK.CREATED", URL: "https://broken.example/hooks"})
	bed.Exec("INSERT INTO breakers (webhook_id, opened_at, probe_at) VALUES (?, NOW(6), NOW(6)), (999, NOW(6), NOW(6))", broken)

	// A ladder of one long delay: the failed delivery stays pending, due in an hour.
	ladder := retry.Ladder{time.Hour}
	env := append(bedEnv(bed), bed.RetryDelaysEnv(ladder))
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	for i := range 3 {
		bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprint("e", i), "TASK.CREATED", 1, ""))
	}
	testbed.Eventually(t, 20*time.Second, "3 succeeded and 3 pending deliveries", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") == 3 &&
			bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND webhook_id = ? AND attempts = 1", down) == 3
	})
	// One more pending delivery whose retry was lost 20 minutes ago, and two dead messages.
	overdue := repository.DeliveryID("e0", broken)
	bed.Exec(`INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, due_at, created_at, updated_at)
		VALUES (?, 'e0', ?, 'pending', 2, NOW(6) - INTERVAL 20 MINUTE, NOW(6), NOW(6))`, overdue, broken)
	for range 2 {
		bed.Publish("", bed.Queue+".dead", amqp.Publishing{Body: []byte("not json")})
	}

	out, stderr, code := webhookd(t, env, "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, stderr)
	}
	t.Logf("webhookd status:\n%s", out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(bed.Queue) + `\s+0\s+work, 1 consumers$`),
		// The three failed attempts wait there.
		regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(bed.Queue+".retry.1h") + `\s+3\s+retry$`),
		regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(bed.Queue+".dead") + `\s+2\s+dead: cannot be processed`),
		regexp.MustCompile(`(?m)^\s+succeeded\s+3$`),
		regexp.MustCompile(`(?m)^\s+pending\s+4$`),
		regexp.MustCompile(`(?m)^\s+failed\s+0$`),
		regexp.MustCompile(`Oldest overdue delivery: 20m\d*s? overdue: delivery ` + overdue + fmt.Sprintf(` \(webhook %d, 2 attempts\)`, broken)),
		regexp.MustCompile(`more than REPAIR_AFTER \(15m\)`),
		regexp.MustCompile(`Webhooks disabled: 1\n\s+` + fmt.Sprint(gone) + `\s+account 2\s+https://gone.example/hooks\s+since .*endpoint answered 410 Gone`),
		regexp.MustCompile(`Webhooks with an open breaker: 2\n\s+` + fmt.Sprint(broken) + `\s+account 3\s+https://broken.example/hooks\s+since `),
		// A breaker whose webhook was deleted.
		regexp.MustCompile(`(?m)^\s+999\s+deleted\s`),
	} {
		if !want.MatchString(out) {
			t.Errorf("status output lacks %v:\n%s", want, out)
		}
	}

	// The broker away: what the database tells is still shown, and the command fails.
	out, _, code = webhookd(t, append(env, "WEBHOOKD_AMQP_URL=amqp://guest:guest@127.0.0.1:1/"), "status")
	if code != 1 || !strings.Contains(out, "broker: cannot read") || !strings.Contains(out, "Webhooks disabled: 1") {
		t.Errorf("status without a broker: exit %d, want 1 with the log's part:\n%s", code, out)
	}
}
