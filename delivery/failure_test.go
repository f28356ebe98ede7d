package delivery_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// failFirst answers 500 to the first n requests on each path, then 200.
func failFirst(n int) func(*http.Request, int) (int, http.Header) {
	return func(_ *http.Request, seen int) (int, http.Header) {
		if seen < n {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	}
}

func always(status int) func(*http.Request, int) (int, http.Header) {
	return func(*http.Request, int) (int, http.Header) { return status, nil }
}

func TestLadderAttemptsAndSibling(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		if r.URL.Path == "/flaky" && n < 3 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	flaky := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/flaky"})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/steady"})
	ladder := retry.Ladder{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	bed.PublishEvent("TASK.CREATED", testbed.Event("climb", "TASK.CREATED", 1, ""))

	reqs := rc.Wait(t, "/flaky", 4, wait)
	id := repository.DeliveryID("climb", flaky)
	for i, r := range reqs {
		if got := r.Header.Get("X-Webhook-Attempt"); got != strconv.Itoa(i+1) {
			t.Errorf("request %d: X-Webhook-Attempt = %s, want %d", i, got, i+1)
		}
		if got := r.Header.Get("X-Webhook-Delivery"); got != id {
			t.Errorf("request %d: delivery id %s, want %s", i, got, id)
		}
		if i > 0 {
			gap := r.At.Sub(reqs[i-1].At)
			t.Logf("wait before attempt %d: %v (ladder %v)", i+1, gap.Round(time.Millisecond), ladder[i-1])
			if gap < ladder[i-1]*9/10 {
				t.Errorf("attempt %d came %v after the previous one, want at least %v", i+1, gap, ladder[i-1])
			}
		}
	}
	testbed.Eventually(t, wait, "the delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE id=? AND status='succeeded' AND attempts=4", id) == 1
	})
	if got := bed.Count("SELECT COUNT(*) FROM attempts WHERE delivery_id=?", id); got != 4 {
		t.Errorf("attempt rows = %d, want 4", got)
	}
	if got := len(rc.Requests("/steady")); got != 1 {
		t.Errorf("sibling webhook got %d requests while the other climbed the ladder, want 1", got)
	}
	if got := len(rc.Requests("/flaky")); got != 4 {
		t.Errorf("flaky webhook got %d requests, want 4", got)
	}
}

func TestExhaustionAnd410(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		if r.URL.Path == "/gone" {
			return http.StatusGone, nil
		}
		return http.StatusBadGateway, nil
	})
	down := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/down"})
	gone := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/gone"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{100 * time.Millisecond, 200 * time.Millisecond}})
	bed.PublishEvent("TASK.CREATED", testbed.Event("x", "TASK.CREATED", 1, ""))

	downID, goneID := repository.DeliveryID("x", down), repository.DeliveryID("x", gone)
	testbed.Eventually(t, wait, "both deliveries to fail", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='failed'") == 2
	})
	d, err := bed.Store.GetDelivery(t.Context(), downID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 3 || d.LastStatusCode.Int64 != 502 {
		t.Errorf("exhausted delivery: attempts=%d last_status_code=%d, want 3 and 502", d.Attempts, d.LastStatusCode.Int64)
	}
	as, err := bed.Store.Attempts(t.Context(), downID)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 3 {
		t.Errorf("attempt rows = %d, want 3", len(as))
	}
	for i, a := range as {
		if a.Attempt != i+1 || a.StatusCode.Int64 != 502 {
			t.Errorf("attempt row %d: number %d status %d", i, a.Attempt, a.StatusCode.Int64)
		}
	}
	if n := len(rc.Requests("/gone")); n != 1 {
		t.Errorf("410 endpoint got %d requests, want 1 (no retries)", n)
	}
	g, err := bed.Store.GetDelivery(t.Context(), goneID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Status != "failed" || g.Attempts != 1 {
		t.Errorf("410 delivery: status %s attempts %d, want failed 1", g.Status, g.Attempts)
	}
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id=? AND enabled=0", gone); n != 1 {
		t.Errorf("webhook answering 410 is still enabled")
	}
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id=? AND enabled=1", down); n != 1 {
		t.Errorf("webhook with one failed delivery was disabled")
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		if n == 0 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}
		}
		if n == 1 {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"3600"}}
		}
		return http.StatusOK, nil
	})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/busy"})
	ladder := retry.Ladder{100 * time.Millisecond, 1500 * time.Millisecond, 2 * time.Second}
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	bed.PublishEvent("TASK.CREATED", testbed.Event("ra", "TASK.CREATED", 1, ""))
	reqs := rc.Wait(t, "/busy", 3, wait)
	// Retry-After 1s: the shortest delay not shorter is 1.5s. Retry-After 1h: the longest, 2s.
	for i, want := range []time.Duration{1500 * time.Millisecond, 2 * time.Second} {
		gap := reqs[i+1].At.Sub(reqs[i].At)
		t.Logf("wait after answer %d: %v, want at least %v", i+1, gap.Round(time.Millisecond), want)
		if gap < want*9/10 {
			t.Errorf("attempt %d came %v after the previous one, want at least %v", i+2, gap, want)
		}
	}
}

func TestAutoDisableNotifies(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(always(http.StatusInternalServerError))
	hook := bed.AddWebhook(testbed.Webhook{Account: 77, Event: "TASK.CREATED", URL: rc.URL + "/broken"})
	notes := bed.Name + ".notes"
	bed.TrackQueue(notes)
	ch := bed.Channel()
	if err := ch.ExchangeDeclare(broker.NotificationExchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(notes, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(notes, "webhook.disabled", broker.NotificationExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{50 * time.Millisecond}, DisableAfter: 2, Concurrency: 1, Prefetch: 1})
	bed.PublishEvent("TASK.CREATED", testbed.Event("f1", "TASK.CREATED", 77, ""))
	testbed.Eventually(t, wait, "the first delivery to fail", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='failed'") == 1
	})
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id=? AND enabled=1 AND consecutive_failures=1", hook); n != 1 {
		t.Fatalf("after one failed delivery the webhook should be enabled with 1 failure")
	}
	bed.PublishEvent("TASK.CREATED", testbed.Event("f2", "TASK.CREATED", 77, ""))

	var note struct {
		WebhookID uint64 `json:"webhookId"`
		AccountID uint64 `json:"accountId"`
		URL       string `json:"url"`
		Reason    string `json:"reason"`
		At        string `json:"at"`
	}
	for {
		msg := bed.Get(notes, wait)
		if err := json.Unmarshal(msg.Body, &note); err != nil {
			t.Fatalf("notification is not JSON: %s", msg.Body)
		}
		if note.URL == rc.URL+"/broken" {
			break
		}
	}
	if note.WebhookID != hook || note.AccountID != 77 || note.Reason == "" {
		t.Errorf("notification = %+v", note)
	}
	if _, err := time.Parse(time.RFC3339, note.At); err != nil {
		t.Errorf("notification at = %q: %v", note.At, err)
	}
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE id=? AND enabled=0", hook); n != 1 {
		t.Errorf("webhook not disabled after 2 failed deliveries")
	}
	// A disabled webhook gets nothing more.
	before := len(rc.Requests("/broken"))
	bed.PublishEvent("TASK.CREATED", testbed.Event("f3", "TASK.CREATED", 77, ""))
	testbed.Eventually(t, wait, "event f3 stored", func() bool {
		return bed.Count("SELECT COUNT(*) FROM events WHERE id='f3'") == 1
	})
	if after := len(rc.Requests("/broken")); after != before {
		t.Errorf("disabled webhook got %d more requests", after-before)
	}
}

func TestDisabledWhileWaiting(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(always(http.StatusInternalServerError))
	hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	deleted := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/b"})
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{1500 * time.Millisecond}})
	bed.PublishEvent("TASK.CREATED", testbed.Event("w", "TASK.CREATED", 1, ""))
	rc.Wait(t, "/a", 1, wait)
	rc.Wait(t, "/b", 1, wait)
	bed.Exec("UPDATE webhooks SET enabled=0 WHERE id=?", hook)
	bed.Exec("DELETE FROM webhooks WHERE id=?", deleted)
	testbed.Eventually(t, wait, "both deliveries to fail without another attempt", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='failed'") == 2
	})
	for _, w := range []uint64{hook, deleted} {
		d, err := bed.Store.GetDelivery(t.Context(), repository.DeliveryID("w", w))
		if err != nil {
			t.Fatal(err)
		}
		if d.Attempts != 1 || !strings.Contains(d.LastError.String, "webhook") {
			t.Errorf("delivery to webhook %d: attempts %d, last_error %q", w, d.Attempts, d.LastError.String)
		}
	}
	if n := len(rc.Requests("")); n != 2 {
		t.Errorf("requests = %d, want 2 (no attempt after disabling or deleting)", n)
	}
}

func TestChangedLadderAcrossRestart(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	rc.Respond(failFirst(1))
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	first := bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{2 * time.Second}})
	bed.PublishEvent("TASK.CREATED", testbed.Event("l", "TASK.CREATED", 1, ""))
	rc.Wait(t, "/a", 1, wait)
	testbed.Eventually(t, wait, "the retry to be parked", func() bool {
		return bed.QueueDepth(retry.QueueName(bed.Queue, 2*time.Second)) == 1
	})
	if err := first.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{100 * time.Millisecond, 300 * time.Millisecond}})
	reqs := rc.Wait(t, "/a", 2, wait)
	if got := reqs[1].Header.Get("X-Webhook-Attempt"); got != "2" {
		t.Errorf("attempt after restart = %s, want 2", got)
	}
	testbed.Eventually(t, wait, "the delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=2") == 1
	})
}

func TestPoisonMessagesGoToDeadQueue(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	// A retry of a delivery without a row waits RepairAfter for it before it is dead-lettered.
	bed.StartWorker(testbed.WorkerOptions{MaxEventBytes: 2000, RepairAfter: time.Second})

	big := testbed.Event("big", "TASK.CREATED", 1, `"data":"`+strings.Repeat("x", 2000)+`"`)
	cases := []struct {
		name, key, body, msgType, reason string
		headers                          amqp.Table
	}{
		{name: "not json", key: "TASK.CREATED", body: "not json", reason: "not a JSON object"},
		{name: "broken json", key: "TASK.CREATED", body: `{"id":"a",`, reason: "not valid JSON"},
		{name: "invalid utf-8", key: "TASK.CREATED", body: "{\"id\":\"\xff\"}", reason: "UTF-8"},
		{name: "missing id", key: "TASK.CREATED", body: `{"event":"TASK.CREATED","accountId":1}`, reason: "field id: missing"},
		{name: "id too long", key: "TASK.CREATED", body: testbed.Event(strings.Repeat("i", 65), "TASK.CREATED", 1, ""), reason: "field id"},
		{name: "account as string", key: "TASK.CREATED", body: `{"id":"a","event":"TASK.CREATED","accountId":"1"}`, reason: "field accountId"},
		{name: "account zero", key: "TASK.CREATED", body: testbed.Event("a", "TASK.CREATED", 0, ""), reason: "field accountId"},
		{name: "project negative", key: "TASK.CREATED", body: testbed.Event("a", "TASK.CREATED", 1, `"projectId":-1`), reason: "field projectId"},
		{name: "object bool", key: "TASK.CREATED", body: testbed.Event("a", "TASK.CREATED", 1, `"objectId":true`), reason: "field objectId"},
		{name: "bad occurredAt", key: "TASK.CREATED", body: testbed.Event("a", "TASK.CREATED", 1, `"occurredAt":"yesterday"`), reason: "field occurredAt"},
		{name: "bad event name", key: "task.created", body: testbed.Event("a", "task.created", 1, ""), reason: "field event"},
		{name: "event differs from key", key: "TASK.DELETED", body: testbed.Event("a", "TASK.CREATED", 1, ""), reason: "does not match routing key"},
		{name: "too large", key: "TASK.CREATED", body: big, reason: "too large"},
		{name: "unknown redelivery", key: "", body: `{"redeliver":"nope"}`, msgType: broker.TypeRedeliver, reason: "unknown delivery id"},
		{name: "unknown retry", key: "", msgType: broker.TypeRetry, reason: "unknown delivery id \"nope\" or attempt 2: no row for it after",
			headers: amqp.Table{broker.HeaderDelivery: "nope", broker.HeaderAttempt: int32(2), broker.HeaderStep: int32(1)}},
		{name: "retry without headers", key: "", msgType: broker.TypeRetry, reason: "headers"},
		{name: "postponed not a list", key: "", body: `{"delivery":"x"}`, msgType: broker.TypePostponed, reason: "want a JSON array"},
		{name: "postponed empty", key: "", body: `[]`, msgType: broker.TypePostponed, reason: "want a JSON array"},
		{name: "postponed without event", key: "", body: `[{"delivery":"x","webhook":1,"attempt":1,"step":0}]`,
			msgType: broker.TypePostponed, reason: "not a valid delivery"},
	}
	for _, c := range cases {
		headers := amqp.Table{"x-case": c.name}
		for k, v := range c.headers {
			headers[k] = v
		}
		if c.key == "" {
			bed.Publish("", bed.Queue, amqp.Publishing{Type: c.msgType, Body: []byte(c.body), Headers: headers})
		} else {
			bed.Publish(bed.Exchange, c.key, amqp.Publishing{Body: []byte(c.body), Headers: headers})
		}
	}
	bed.PublishEvent("TASK.CREATED", testbed.Event("good", "TASK.CREATED", 1, ""))
	rc.Wait(t, "/a", 1, wait)

	got := map[string]string{}
	for range cases {
		msg := bed.Get(bed.Queue+".dead", wait)
		reason, _ := msg.Headers[broker.HeaderError].(string)
		name, _ := msg.Headers["x-case"].(string)
		got[name] = reason
		if _, ok := msg.Headers["x-death"]; ok {
			t.Errorf("dead message carries x-death: %v", msg.Headers)
		}
	}
	for _, c := range cases {
		reason, ok := got[c.name]
		if !ok {
			t.Errorf("%s: not in the dead queue", c.name)
			continue
		}
		if !strings.Contains(reason, c.reason) {
			t.Errorf("%s: x-webhookd-error = %q, want it to mention %q", c.name, reason, c.reason)
		}
	}
	if n := len(rc.Requests("/a")); n != 1 {
		t.Errorf("receiver got %d requests, want 1 (the good event)", n)
	}
}
