package delivery_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

const wait = 20 * time.Second

func TestFanOut(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	a := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	b := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/shared"})
	c := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/shared"})
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.DELETED", URL: rc.URL + "/other-event"})
	bed.StartWorker(testbed.WorkerOptions{})

	bed.PublishEvent("TASK.CREATED", testbed.Event("e1", "TASK.CREATED", 1, `"objectId":42,"data":{"title":"Fix"}`))
	rc.Wait(t, "/a", 1, wait)
	shared := rc.Wait(t, "/shared", 2, wait)
	testbed.Eventually(t, wait, "three succeeded deliveries", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='e1' AND status='succeeded' AND attempts=1") == 3
	})
	ids := map[string]bool{shared[0].Header.Get("X-Webhook-Delivery"): true, shared[1].Header.Get("X-Webhook-Delivery"): true}
	for _, w := range []uint64{b, c} {
		if !ids[repository.DeliveryID("e1", w)] {
			t.Errorf("webhook %d: no request with delivery id %s; got %v", w, repository.DeliveryID("e1", w), ids)
		}
	}
	if n := len(rc.Requests("/other-event")); n != 0 {
		t.Errorf("webhook for another event got %d requests, want 0", n)
	}
	if got := bed.Count("SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.event_id='e1' AND a.status_code=200"); got != 3 {
		t.Errorf("attempt rows = %d, want 3", got)
	}
	if got := bed.Count("SELECT COUNT(*) FROM events WHERE id='e1' AND account_id=1 AND event='TASK.CREATED'"); got != 1 {
		t.Errorf("event rows = %d, want 1", got)
	}
	_ = a
}

func TestAccountIsolationAndProjectFilter(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/acct1-all"})
	bed.AddWebhook(testbed.Webhook{Account: 1, Project: 5, Event: "TASK.CREATED", URL: rc.URL + "/acct1-p5"})
	bed.AddWebhook(testbed.Webhook{Account: 1, Project: 6, Event: "TASK.CREATED", URL: rc.URL + "/acct1-p6"})
	bed.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: rc.URL + "/acct2"})
	off := false
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/disabled", Enabled: &off})
	bed.StartWorker(testbed.WorkerOptions{})

	bed.PublishEvent("TASK.CREATED", testbed.Event("p5", "TASK.CREATED", 1, `"projectId":5`))
	bed.PublishEvent("TASK.CREATED", testbed.Event("none", "TASK.CREATED", 1, `"projectId":null`))
	bed.PublishEvent("TASK.CREATED", testbed.Event("a2", "TASK.CREATED", 2, ""))
	rc.Wait(t, "/acct2", 1, wait)
	rc.Wait(t, "/acct1-p5", 1, wait)
	rc.Wait(t, "/acct1-all", 2, wait)
	// Every delivery of the three events is settled before counting what must not arrive.
	testbed.Eventually(t, wait, "4 settled deliveries", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded'") == 4
	})
	tests := []struct {
		path string
		want []string
	}{
		{"/acct1-all", []string{"p5", "none"}},
		{"/acct1-p5", []string{"p5"}},
		{"/acct1-p6", nil},
		{"/acct2", []string{"a2"}},
		{"/disabled", nil},
	}
	for _, tt := range tests {
		got := map[string]bool{}
		for _, r := range rc.Requests(tt.path) {
			var body struct{ EventID string }
			json.Unmarshal(r.Body, &body)
			got[body.EventID] = true
		}
		if len(got) != len(tt.want) || len(rc.Requests(tt.path)) != len(tt.want) {
			t.Errorf("%s got events %v, want %v", tt.path, got, tt.want)
		}
		for _, id := range tt.want {
			if !got[id] {
				t.Errorf("%s: missing event %s (got %v)", tt.path, id, got)
			}
		}
	}
}

func TestSignaturesAndBody(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	const plain = "plain-token-ü"
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	bed.AddWebhook(testbed.Webhook{Account: 3, Event: "MESSAGE.DELETED", URL: rc.URL + "/plain", Token: plain})
	bed.AddWebhook(testbed.Webhook{Account: 3, Event: "MESSAGE.DELETED", URL: rc.URL + "/whsec", Token: whsec})
	bed.StartWorker(testbed.WorkerOptions{})

	data := `{"big":123456789012345678901234567890,"f":1.0e+400,"neg":-0.000000000000000000001,"s":"<&>"}`
	bed.PublishEvent("MESSAGE.DELETED", testbed.Event("sig-1", "MESSAGE.DELETED", 3,
		`"projectId":9,"objectId":"abc","occurredAt":"2026-01-02T03:04:05+02:00","data":`+data))

	for _, tc := range []struct{ path, token string }{{"/plain", plain}, {"/whsec", whsec}} {
		r := rc.Wait(t, tc.path, 1, wait)[0]
		checkSignatures(t, tc.path, r, tc.token)
		id := r.Header.Get("X-Webhook-Delivery")
		if r.Header.Get("webhook-id") != id || len(id) == 0 || len(id) > 64 {
			t.Errorf("%s: webhook-id %q, X-Webhook-Delivery %q", tc.path, r.Header.Get("webhook-id"), id)
		}
		ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		if d := time.Since(time.Unix(ts, 0)); d < -time.Minute || d > time.Minute {
			t.Errorf("%s: webhook-timestamp %d is %v from now", tc.path, ts, d)
		}
		for h, want := range map[string]string{
			"Content-Type":      "application/json",
			"User-Agent":        "webhookd/test",
			"X-Webhook-Event":   "MESSAGE.DELETED",
			"X-Webhook-Attempt": "1",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", tc.path, h, got, want)
			}
		}
		want := `{"event":"MESSAGE.DELETED","eventId":"sig-1","accountId":3,"projectId":9,"objectId":"abc","occurredAt":"2026-01-02T03:04:05+02:00","data":` + data + `}`
		if string(r.Body) != want {
			t.Errorf("%s: body\n got %s\nwant %s", tc.path, r.Body, want)
		}
	}
}

func TestIdempotentByEventID(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 4, Event: "TASK.CREATED", URL: rc.URL + "/a"})
	bed.AddWebhook(testbed.Webhook{Account: 4, Event: "TASK.CREATED", URL: rc.URL + "/b"})
	// One message at a time, so the sentinel is handled only after both copies.
	bed.StartWorker(testbed.WorkerOptions{Concurrency: 1, Prefetch: 1})
	ev := testbed.Event("dup", "TASK.CREATED", 4, `"data":{"n":1}`)
	bed.PublishEvent("TASK.CREATED", ev)
	bed.PublishEvent("TASK.CREATED", ev)
	bed.PublishEvent("TASK.CREATED", testbed.Event("sentinel", "TASK.CREATED", 4, ""))
	testbed.Eventually(t, wait, "the sentinel's deliveries", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id='sentinel' AND status='succeeded'") == 2
	})
	for _, path := range []string{"/a", "/b"} {
		seen := map[string]int{}
		for _, r := range rc.Requests(path) {
			var body struct{ EventID string }
			json.Unmarshal(r.Body, &body)
			seen[body.EventID]++
		}
		if seen["dup"] != 1 || seen["sentinel"] != 1 {
			t.Errorf("%s: deliveries per event = %v, want dup:1 sentinel:1", path, seen)
		}
	}
	if got := bed.Count("SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id=a.delivery_id WHERE d.event_id='dup'"); got != 2 {
		t.Errorf("attempts for the duplicated event = %d, want 2", got)
	}
}

func TestWebhookChangeSeenWithinTenSeconds(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	clock := testbed.NewClock()
	id := bed.AddWebhook(testbed.Webhook{Account: 5, Event: "TASK.UPDATED", URL: rc.URL + "/old"})
	bed.StartWorker(testbed.WorkerOptions{CacheClock: clock, Concurrency: 1, Prefetch: 1})
	bed.PublishEvent("TASK.UPDATED", testbed.Event("before", "TASK.UPDATED", 5, ""))
	rc.Wait(t, "/old", 1, wait)

	bed.Exec("UPDATE webhooks SET url = ? WHERE id = ?", rc.URL+"/new", id)
	bed.AddWebhook(testbed.Webhook{Account: 5, Event: "TASK.UPDATED", URL: rc.URL + "/added"})
	clock.Advance(10 * time.Second)
	bed.PublishEvent("TASK.UPDATED", testbed.Event("after", "TASK.UPDATED", 5, ""))
	rc.Wait(t, "/new", 1, wait)
	rc.Wait(t, "/added", 1, wait)
	if n := len(rc.Requests("/old")); n != 1 {
		t.Errorf("old URL got %d requests, want 1", n)
	}

	bed.Exec("UPDATE webhooks SET enabled = 0")
	clock.Advance(10 * time.Second)
	bed.PublishEvent("TASK.UPDATED", testbed.Event("disabled", "TASK.UPDATED", 5, ""))
	bed.PublishEvent("TASK.UPDATED", testbed.Event("sentinel", "TASK.UPDATED", 5, ""))
	testbed.Eventually(t, wait, "the sentinel event stored", func() bool {
		return bed.Count("SELECT COUNT(*) FROM events WHERE id='sentinel'") == 1
	})
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE event_id IN ('disabled','sentinel')"); n != 0 {
		t.Errorf("deliveries after disabling every webhook = %d, want 0", n)
	}
}

// TestEveryFormat delivers one event to a webhook of each format and checks each signature
// over the exact bytes received, and that each body carries the event.
func TestEveryFormat(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	for _, f := range []string{"json", "xml", "form"} {
		bed.AddWebhook(testbed.Webhook{Account: 8, Event: "TASK.CREATED", URL: rc.URL + "/" + f, Format: f, Token: "tok-" + f})
	}
	bed.StartWorker(testbed.WorkerOptions{})
	bed.PublishEvent("TASK.CREATED", testbed.Event("fmt", "TASK.CREATED", 8,
		`"projectId":2,"objectId":7,"data":{"title":"Fix <roof> & \"door\"","tags":["a","b"],"n":12345678901234567890,"none":null}`))
	tests := []struct {
		format, contentType string
		wants               []string
	}{
		{"json", "application/json", []string{`"eventId":"fmt"`, `"n":12345678901234567890`}},
		{"xml", "application/xml", []string{`<?xml version="1.0" encoding="UTF-8"?>`, `<eventId>fmt</eventId>`, `<n>12345678901234567890</n>`, `&lt;roof&gt; &amp;`, `<none nil="true"/>`}},
		{"form", "application/x-www-form-urlencoded", []string{"eventId=fmt", "data[tags][1]=b", "data[n]=12345678901234567890", "data[none]="}},
	}
	for _, tt := range tests {
		r := rc.Wait(t, "/"+tt.format, 1, wait)[0]
		if got := r.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("%s: Content-Type %q, want %q", tt.format, got, tt.contentType)
		}
		checkSignatures(t, tt.format, r, "tok-"+tt.format)
		for _, want := range tt.wants {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("%s body lacks %q:\n%s", tt.format, want, r.Body)
			}
		}
	}
}

// checkSignatures verifies both signatures of a received webhook independently of webhookd's
// signer: X-Webhook-Signature with crypto/hmac, webhook-signature with the Standard Webhooks
// reference library.
func checkSignatures(t *testing.T, name string, r testbed.Request, token string) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write(r.Body)
	if got, want := r.Header.Get("X-Webhook-Signature"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("%s: X-Webhook-Signature = %q, want %q", name, got, want)
	}
	var verifier *standardwebhooks.Webhook
	var err error
	if strings.HasPrefix(token, "whsec_") {
		verifier, err = standardwebhooks.NewWebhook(token)
	} else {
		verifier, err = standardwebhooks.NewWebhookRaw([]byte(token))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Verify(r.Body, r.Header); err != nil {
		t.Errorf("%s: Standard Webhooks verifier: %v", name, err)
	}
}
