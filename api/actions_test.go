package api

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
)

// detail is the JSON of GET /v1/deliveries/{id}.
type detail struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempts []struct {
		Attempt      int     `json:"attempt"`
		StatusCode   *int    `json:"status_code"`
		ResponseBody *string `json:"response_body"`
	} `json:"attempts"`
	Request *struct {
		Attempt int               `json:"attempt"`
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"request"`
}

// The request a delivery shows is what its attempt sent, in every format: the same URL,
// every header of the contract and the same body, byte for byte; the token is not in it.
func TestDeliveryShowsTheRequestSent(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	rc := testbed.NewReceiver(t)
	rc.Respond(func(*http.Request, int) (int, http.Header) { return 202, nil })
	tokens := map[string]string{"json": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "xml": "plain-xml-token", "form": "plain-form-token"}
	hooks := map[string]uint64{}
	for f, tok := range tokens {
		hooks[f] = b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/" + f, Format: f, Token: tok})
	}
	b.StartWorker(testbed.WorkerOptions{})
	b.PublishEvent("TASK.CREATED", testbed.Event("ev-req", "TASK.CREATED", 1,
		`"projectId":3,"objectId":"obj-1","occurredAt":"2026-12-01T10:00:00+02:00",`+
			`"data":{"title":"Fix <the> roof & more","n":12345678901234567890,"tags":["a","b"],"none":null}`))
	tok := token(t, 1, "read")
	for f, id := range hooks {
		sent := rc.Wait(t, "/"+f, 1, wait)[0]
		did := repository.DeliveryID("ev-req", id)
		testbed.Eventually(t, wait, f+" delivery recorded", func() bool { s, _ := b.status(t, did); return s == "succeeded" })
		a := b.ok(t, 200, "GET", "/v1/deliveries/"+did, tok, nil)
		var d detail
		a.json(t, &d)
		if len(d.Attempts) != 1 || d.Attempts[0].StatusCode == nil || *d.Attempts[0].StatusCode != 202 {
			t.Errorf("%s: attempts = %+v, want one answered 202", f, d.Attempts)
		}
		r := d.Request
		if r == nil {
			t.Fatalf("%s: no request in %s", f, a.body)
		}
		if r.Method != "POST" || r.URL != rc.URL+"/"+f || r.Attempt != 1 {
			t.Errorf("%s: request %s %s attempt %d, want POST %s/%s attempt 1", f, r.Method, r.URL, r.Attempt, rc.URL, f)
		}
		if r.Body != string(sent.Body) {
			t.Errorf("%s: body shown\n%s\nbody sent\n%s", f, r.Body, sent.Body)
		}
		for _, name := range sender.RequestHeaders {
			if got, want := r.Headers[name], sent.Header.Get(name); got != want || want == "" {
				t.Errorf("%s: header %s shown %q, sent %q", f, name, got, want)
			}
		}
		if strings.Contains(string(a.body), tokens[f]) {
			t.Errorf("%s: the answer carries the webhook's token", f)
		}
	}
}

// Retry redelivers a failed delivery: the receiver gets its next attempt number, and the
// delivery turns succeeded. A disabled webhook's delivery is refused, not queued.
func TestRetryReachesTheReceiver(t *testing.T) {
	t.Parallel()
	ladder := retry.Ladder{50 * time.Millisecond}
	b := newAPIBed(t, ladder)
	rc := testbed.NewReceiver(t)
	var failing atomic.Bool
	failing.Store(true)
	rc.Respond(func(*http.Request, int) (int, http.Header) {
		if failing.Load() {
			return 500, nil
		}
		return 200, nil
	})
	h := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/r"})
	b.StartWorker(testbed.WorkerOptions{Ladder: ladder})
	b.PublishEvent("TASK.CREATED", testbed.Event("ev-retry", "TASK.CREATED", 1, `"data":{"n":1}`))
	id := repository.DeliveryID("ev-retry", h)
	testbed.Eventually(t, wait, "the delivery to fail twice", func() bool { s, n := b.status(t, id); return s == "failed" && n == 2 })

	failing.Store(false)
	var q struct{ Queued int }
	b.ok(t, 202, "POST", "/v1/deliveries/"+id+"/retry", token(t, 1, "write"), nil).json(t, &q)
	if q.Queued != 1 {
		t.Errorf("queued = %d, want 1", q.Queued)
	}
	third := rc.Wait(t, "/r", 3, wait)[2]
	if third.Header.Get("X-Webhook-Attempt") != "3" || third.Header.Get("X-Webhook-Delivery") != id {
		t.Errorf("retry reached the receiver as delivery %s attempt %s, want %s attempt 3",
			third.Header.Get("X-Webhook-Delivery"), third.Header.Get("X-Webhook-Attempt"), id)
	}
	read := token(t, 1, "read")
	testbed.Eventually(t, wait, "the API to show it succeeded", func() bool {
		var d detail
		b.ok(t, 200, "GET", "/v1/deliveries/"+id, read, nil).json(t, &d)
		return d.Status == "succeeded" && len(d.Attempts) == 3 && d.Request != nil && d.Request.Attempt == 3
	})

	off := false
	dis := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/off", Enabled: &off})
	stale := b.insertDelivery(t, "ev-off", dis, "failed", time.Now(), "")
	a := b.call(t, "POST", "/v1/deliveries/"+stale+"/retry", token(t, 1, "write"), nil)
	if a.status != http.StatusConflict || !strings.Contains(a.errorText(t), "disabled") {
		t.Errorf("retry of a disabled webhook's delivery = %d %s, want 409 saying it is disabled", a.status, a.body)
	}
}

// A bulk retry walks the matching deliveries in batches: a dry run only counts them and
// queues nothing; the real one queues each once, and each reaches the receiver with its
// next attempt number. Other webhooks and statuses are left alone.
func TestBulkRetry(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil, func(s *Server) { s.retryBatch = 2 })
	rc := testbed.NewReceiver(t)
	a := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	other := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/other"})
	now := time.Now().UTC()
	var failed []string
	for i := range 5 {
		id := b.insertDelivery(t, fmt.Sprintf("bulk-%d", i), a, "failed", now.Add(time.Duration(i-10)*time.Second), "")
		b.Exec("UPDATE deliveries SET attempts = 2 WHERE id = ?", id)
		failed = append(failed, id)
	}
	done := b.insertDelivery(t, "bulk-ok", a, "succeeded", now.Add(-time.Minute), "")
	elsewhere := b.insertDelivery(t, "bulk-other", other, "failed", now.Add(-time.Minute), "")
	tok := token(t, 1, "write")
	body := map[string]any{"webhook_id": a, "status": "failed", "dry_run": true}

	var n struct {
		Count  int  `json:"count"`
		DryRun bool `json:"dry_run"`
	}
	b.ok(t, 200, "POST", "/v1/deliveries/retry", tok, body).json(t, &n)
	if n.Count != 5 || !n.DryRun {
		t.Errorf("dry run = %+v, want a count of 5", n)
	}
	if depth := b.QueueDepth(b.Queue); depth != 0 {
		t.Fatalf("the dry run queued %d messages", depth)
	}
	// Until: before the newest two.
	b.ok(t, 200, "POST", "/v1/deliveries/retry", tok, map[string]any{"webhook_id": a, "status": "failed",
		"until": now.Add(-7 * time.Second).Format(time.RFC3339Nano), "dry_run": true}).json(t, &n)
	if n.Count != 3 {
		t.Errorf("dry run until = %d, want 3", n.Count)
	}

	b.StartWorker(testbed.WorkerOptions{})
	delete(body, "dry_run")
	b.ok(t, 202, "POST", "/v1/deliveries/retry", tok, body).json(t, &n)
	if n.Count != 5 || n.DryRun {
		t.Errorf("bulk retry = %+v, want a count of 5", n)
	}
	got := map[string]string{}
	for _, r := range rc.Wait(t, "/a", 5, wait) {
		got[r.Header.Get("X-Webhook-Delivery")] += r.Header.Get("X-Webhook-Attempt")
	}
	for _, id := range failed {
		if got[id] != "3" {
			t.Errorf("delivery %s reached the receiver with attempts %q, want once as 3", id, got[id])
		}
		testbed.Eventually(t, wait, id+" succeeded", func() bool { s, n := b.status(t, id); return s == "succeeded" && n == 3 })
	}
	if got[done] != "" || len(rc.Requests("/other")) != 0 {
		t.Errorf("bulk retry reached deliveries it did not match: %v, %d to the other webhook", got, len(rc.Requests("/other")))
	}
	if s, n := b.status(t, elsewhere); s != "failed" || n != 1 {
		t.Errorf("the other webhook's delivery is %s after %d attempts, want untouched", s, n)
	}
}

// Enabling a webhook resets its failures and circuit and, given replay_since, delivers the
// events it missed while disabled, as `webhookd replay` does: each once, as attempt 1.
func TestEnableReplays(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	rc := testbed.NewReceiver(t)
	off := false
	late := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/late", Enabled: &off})
	b.Exec("UPDATE webhooks SET disabled_reason = 'failed 5 deliveries in a row', consecutive_failures = 5 WHERE id = ?", late)
	b.Exec("INSERT INTO breakers (webhook_id, opened_at, probe_at) VALUES (?, NOW(6), NOW(6))", late)
	b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/on"})
	b.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: rc.URL + "/two"})
	b.StartWorker(testbed.WorkerOptions{})
	since := time.Now().Add(-time.Minute)
	b.PublishEvent("TASK.CREATED", testbed.Event("missed-1", "TASK.CREATED", 1, `"data":{"k":1}`))
	b.PublishEvent("TASK.CREATED", testbed.Event("missed-2", "TASK.CREATED", 1, `"data":{"k":2}`))
	b.PublishEvent("TASK.CREATED", testbed.Event("not-theirs", "TASK.CREATED", 2, ""))
	rc.Wait(t, "/on", 2, wait)
	rc.Wait(t, "/two", 1, wait)
	tok := token(t, 1, "read write")

	var res struct{ Replayed int }
	path := fmt.Sprintf("/v1/webhooks/%d/enable", late)
	b.ok(t, 200, "POST", path, tok, map[string]string{"replay_since": since.Format(time.RFC3339Nano)}).json(t, &res)
	if res.Replayed != 2 {
		t.Errorf("replayed = %d, want 2", res.Replayed)
	}
	seen := map[string]bool{}
	for _, r := range rc.Wait(t, "/late", 2, wait) {
		if r.Header.Get("X-Webhook-Attempt") != "1" {
			t.Errorf("replayed attempt %s, want 1", r.Header.Get("X-Webhook-Attempt"))
		}
		for _, id := range []string{"missed-1", "missed-2"} {
			if bytes.Contains(r.Body, []byte(`"eventId":"`+id+`"`)) {
				seen[id] = true
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("replayed events %v, want missed-1 and missed-2", seen)
	}
	var w webhookView
	b.ok(t, 200, "GET", fmt.Sprintf("/v1/webhooks/%d", late), tok, nil).json(t, &w)
	if !w.Enabled || w.ConsecutiveFailures != 0 || w.DisabledReason != nil || w.Circuit != "closed" {
		t.Errorf("after enabling: %+v, want enabled, no failures, no reason, circuit closed", w)
	}

	// Once their attempts are recorded, the same replay finds nothing missed; enabling
	// without a body replays nothing.
	for _, id := range []string{"missed-1", "missed-2"} {
		did := repository.DeliveryID(id, late)
		testbed.Eventually(t, wait, id+" recorded", func() bool { _, n := b.status(t, did); return n == 1 })
	}
	b.ok(t, 200, "POST", path, tok, map[string]string{"replay_since": since.Format(time.RFC3339Nano)}).json(t, &res)
	if res.Replayed != 0 {
		t.Errorf("second replay = %d, want 0", res.Replayed)
	}
	b.ok(t, 200, "POST", path, tok, nil).json(t, &res)
	if res.Replayed != 0 {
		t.Errorf("enable without replay_since replayed %d", res.Replayed)
	}
	if n := len(rc.Requests("/late")); n != 2 {
		t.Errorf("the webhook got %d requests, want the 2 replayed", n)
	}
}
