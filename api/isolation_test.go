package api

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
)

// One account never sees nor touches another's rows: on every route, another account's id
// answers exactly as an id that does not exist, lists and filters leave its rows out, and no
// answer carries a webhook's signing token.
func TestAccountIsolation(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	off := false
	mine := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://one.example/hook", Token: "secret-of-account-one", Enabled: &off})
	theirs := b.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: "http://two.example/hook", Token: "secret-of-account-two"})
	now := time.Now().UTC()
	d1 := b.insertDelivery(t, "e-one", mine, "failed", now, "7")
	d2 := b.insertDelivery(t, "e-two", theirs, "failed", now, "7")
	b.Exec("INSERT INTO attempts (delivery_id, attempt, started_at, duration_us, status_code, response_body) VALUES (?, 1, ?, 1000, 500, 'no')", d1, now)
	one, two := token(t, 1, "read write"), token(t, 2, "read write")

	var answers []answer
	keep := func(a answer) answer { answers = append(answers, a); return a }
	same := func(method, known, unknown string, body any) {
		t.Helper()
		got := keep(b.call(t, method, known, two, body))
		ref := keep(b.call(t, method, unknown, two, body))
		if got.status != 404 || ref.status != 404 || !bytes.Equal(got.body, ref.body) {
			t.Errorf("%s %s with another account's token = %d %s; an unknown id = %d %s; want the same 404",
				method, known, got.status, got.body, ref.status, ref.body)
		}
	}
	same("GET", fmt.Sprintf("/v1/webhooks/%d", mine), "/v1/webhooks/999999", nil)
	same("POST", fmt.Sprintf("/v1/webhooks/%d/enable", mine), "/v1/webhooks/999999/enable", map[string]string{"replay_since": now.Add(-time.Hour).Format(time.RFC3339)})
	same("GET", "/v1/deliveries/"+d1, "/v1/deliveries/no-such-delivery", nil)
	same("POST", "/v1/deliveries/"+d1+"/retry", "/v1/deliveries/no-such-delivery/retry", nil)
	same("GET", "/v1/events/e-one", "/v1/events/no-such-event", nil)
	if n := b.Count("SELECT COUNT(*) FROM webhooks WHERE id = ? AND enabled = 0", mine); n != 1 {
		t.Error("another account enabled the webhook")
	}

	// Lists and their filters show account 2 its own rows only.
	lists := []string{
		"/v1/webhooks", "/v1/deliveries", "/v1/events", "/v1/deliveries?object_id=7", "/v1/events?object_id=7",
		fmt.Sprintf("/v1/deliveries?webhook_id=%d", mine), "/v1/deliveries?event_id=e-one", "/v1/deliveries?status=failed",
	}
	for _, path := range lists {
		a := keep(b.ok(t, 200, "GET", path, two, nil))
		for _, leak := range []string{d1, "e-one", "one.example", fmt.Sprintf(`"id":%d,`, mine)} {
			if strings.Contains(string(a.body), leak) {
				t.Errorf("GET %s as account 2 shows %q: %s", path, leak, a.body)
			}
		}
	}
	var p deliveryPage
	keep(b.ok(t, 200, "GET", "/v1/deliveries", two, nil)).json(t, &p)
	if len(p.Data) != 1 || p.Data[0].ID != d2 {
		t.Errorf("account 2's deliveries = %+v, want only %s", p.Data, d2)
	}

	// A bulk retry counts only the caller's deliveries, whatever webhook it names.
	var n struct{ Count int }
	keep(b.ok(t, 200, "POST", "/v1/deliveries/retry", two, map[string]any{"webhook_id": mine, "dry_run": true})).json(t, &n)
	if n.Count != 0 {
		t.Errorf("account 2's dry run on account 1's webhook counted %d, want 0", n.Count)
	}
	keep(b.ok(t, 200, "POST", "/v1/deliveries/retry", two, map[string]any{"status": "failed", "dry_run": true})).json(t, &n)
	if n.Count != 1 {
		t.Errorf("account 2's dry run on its failed deliveries counted %d, want 1", n.Count)
	}
	if depth := b.QueueDepth(b.Queue); depth != 0 {
		t.Errorf("work queue holds %d messages after refused and dry-run retries, want 0", depth)
	}

	// Account 1 sees its own, and no answer to either account holds a signing token.
	keep(b.ok(t, 200, "GET", "/v1/deliveries/"+d1, one, nil))
	keep(b.ok(t, 200, "GET", fmt.Sprintf("/v1/webhooks/%d", mine), one, nil))
	keep(b.ok(t, 200, "GET", "/v1/webhooks", one, nil))
	keep(b.ok(t, 200, "GET", "/v1/events/e-one", one, nil))
	for _, a := range answers {
		if bytes.Contains(a.body, []byte("secret-of-account")) {
			t.Errorf("an answer carries a webhook's token: %s", a.body)
		}
	}
}

// A webhook's health: enabled or why not, failures in a row, its limits, its circuit from
// the breakers table, and its deliveries of the last 24 hours by status.
func TestWebhookHealth(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	off := false
	h := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://h.example/", Token: "tok-h", Enabled: &off})
	b.Exec("UPDATE webhooks SET disabled_reason = 'endpoint answered 410 Gone', consecutive_failures = 3, rate_limit = 5, ordered = 1 WHERE id = ?", h)
	b.Exec("INSERT INTO breakers (webhook_id, opened_at, probe_at) VALUES (?, NOW(6), NOW(6))", h)
	quiet := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.DELETED", URL: "http://q.example/", Project: 9})
	now := time.Now().UTC()
	b.insertDelivery(t, "s1", h, "succeeded", now.Add(-time.Hour), "")
	b.insertDelivery(t, "s2", h, "succeeded", now.Add(-2*time.Hour), "")
	last := b.insertDelivery(t, "f1", h, "failed", now.Add(-3*time.Hour), "")
	b.Exec("UPDATE deliveries SET last_status_code = 410, last_error = 'gone' WHERE id = ?", last)
	b.insertDelivery(t, "p1", h, "pending", now.Add(-4*time.Hour), "")
	b.insertDelivery(t, "old", h, "failed", now.Add(-25*time.Hour), "")
	tok := token(t, 1, "")

	var got struct {
		webhookView
		Stats struct {
			Pending, Succeeded, Failed int
			LastFailure                *struct {
				DeliveryID string `json:"delivery_id"`
				StatusCode *int   `json:"status_code"`
				Error      *string
			} `json:"last_failure"`
		}
	}
	a := b.ok(t, 200, "GET", fmt.Sprintf("/v1/webhooks/%d", h), tok, nil)
	a.json(t, &got)
	w := got.webhookView
	if w.Enabled || w.DisabledReason == nil || *w.DisabledReason != "endpoint answered 410 Gone" || w.ConsecutiveFailures != 3 ||
		w.RateLimit == nil || *w.RateLimit != 5 || !w.Ordered || w.Circuit != "open" || w.Format != "json" || w.Event != "TASK.CREATED" {
		t.Errorf("webhook = %+v (%s)", w, a.body)
	}
	if s := got.Stats; s.Succeeded != 2 || s.Failed != 1 || s.Pending != 1 {
		t.Errorf("24 h stats = %+v, want 2 succeeded, 1 failed, 1 pending", s)
	}
	if f := got.Stats.LastFailure; f == nil || f.DeliveryID != last || f.StatusCode == nil || *f.StatusCode != 410 {
		t.Errorf("last failure = %+v, want %s with 410", f, last)
	}
	if strings.Contains(string(a.body), "tok-h") || strings.Contains(string(a.body), `"token"`) {
		t.Errorf("webhook answer carries its token: %s", a.body)
	}
	var q webhookView
	b.ok(t, 200, "GET", fmt.Sprintf("/v1/webhooks/%d", quiet), tok, nil).json(t, &q)
	if !q.Enabled || q.DisabledReason != nil || q.Circuit != "closed" || q.RateLimit != nil || q.Ordered || q.ProjectID == nil || *q.ProjectID != 9 {
		t.Errorf("quiet webhook = %+v", q)
	}
	var list struct{ Data []webhookView }
	b.ok(t, 200, "GET", "/v1/webhooks?limit=1", tok, nil).json(t, &list)
	if len(list.Data) != 1 || list.Data[0].ID != quiet {
		t.Errorf("newest webhook first: got %+v, want %d", list.Data, quiet)
	}
}
