package api

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// walk reads every page of a list with limit, checking that each page is newest first and
// continues where the previous one stopped.
func walk(t *testing.T, b *apiBed, tok, path string, limit int) []delivery {
	t.Helper()
	var all []delivery
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages: the cursor does not advance")
		}
		q := path + "&limit=" + fmt.Sprint(limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var p deliveryPage
		b.ok(t, 200, "GET", q, tok, nil).json(t, &p)
		if len(p.Data) > limit {
			t.Fatalf("page of %d items with limit %d", len(p.Data), limit)
		}
		all = append(all, p.Data...)
		if p.NextCursor == nil {
			return all
		}
		if len(p.Data) != limit {
			t.Fatalf("a page of %d items with limit %d has a next cursor", len(p.Data), limit)
		}
		cursor = *p.NextCursor
	}
}

// Pages follow one another without overlap or gap, newest first, rows sharing a time
// included, and every filter narrows the list to exactly what matches.
func TestDeliveriesPagesAndFilters(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	a := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://a.example/hook", Token: "secret-a"})
	c := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: "http://c.example/hook", Token: "secret-c"})
	other := b.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: "http://other.example/hook"})
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	statuses := []string{"succeeded", "failed", "pending"}
	want := map[string]delivery{}
	for i := range 61 {
		// Every third row shares its time with the one before: the id breaks the tie.
		at := base.Add(time.Duration(i-i%3/2) * time.Minute)
		hook := []uint64{a, c}[i%2]
		ev := fmt.Sprintf("ev%02d", i)
		obj := ""
		if i%5 == 0 {
			obj = fmt.Sprint(i)
		}
		id := b.insertDelivery(t, ev, hook, statuses[i%3], at, obj)
		want[id] = delivery{ID: id, EventID: ev, WebhookID: hook, Status: statuses[i%3], CreatedAt: at}
	}
	b.insertDelivery(t, "theirs", other, "failed", base, "")
	tok := token(t, 1, "read")

	check := func(name, query string, match func(delivery) bool) {
		t.Helper()
		for _, limit := range []int{1, 7, 100} {
			got := walk(t, b, tok, "/v1/deliveries?"+query, limit)
			seen := map[string]bool{}
			for i, d := range got {
				if seen[d.ID] {
					t.Errorf("%s, limit %d: %s twice", name, limit, d.ID)
				}
				seen[d.ID] = true
				w, ok := want[d.ID]
				if !ok || !match(w) {
					t.Errorf("%s, limit %d: %s (%+v) should not be listed", name, limit, d.ID, d)
				}
				if i > 0 {
					p := got[i-1]
					if p.CreatedAt.Before(d.CreatedAt) || (p.CreatedAt.Equal(d.CreatedAt) && p.ID < d.ID) {
						t.Errorf("%s, limit %d: %s before %s is not newest first", name, limit, p.ID, d.ID)
					}
				}
			}
			for id, w := range want {
				if match(w) && !seen[id] {
					t.Errorf("%s, limit %d: %s missing", name, limit, id)
				}
			}
		}
	}
	all := func(delivery) bool { return true }
	since, until := base.Add(10*time.Minute), base.Add(20*time.Minute)
	check("all", "", all)
	check("webhook_id", fmt.Sprintf("webhook_id=%d", c), func(d delivery) bool { return d.WebhookID == c })
	check("status", "status=failed", func(d delivery) bool { return d.Status == "failed" })
	check("webhook and status", fmt.Sprintf("webhook_id=%d&status=pending", a), func(d delivery) bool { return d.WebhookID == a && d.Status == "pending" })
	check("since/until", "since="+since.Format(time.RFC3339)+"&until="+until.Format(time.RFC3339),
		func(d delivery) bool { return !d.CreatedAt.Before(since) && d.CreatedAt.Before(until) })
	check("event_id", "event_id=ev07", func(d delivery) bool { return d.EventID == "ev07" })
	check("object_id", "object_id=15", func(d delivery) bool { return d.EventID == "ev15" })
	check("event", "event=TASK.CREATED", all)
	check("another event", "event=TASK.DELETED", func(delivery) bool { return false })
	check("another account's webhook", fmt.Sprintf("webhook_id=%d", other), func(delivery) bool { return false })

	// Items carry the contract's fields, and the event's name.
	var p deliveryPage
	b.ok(t, 200, "GET", "/v1/deliveries?event_id=ev07", tok, nil).json(t, &p)
	if len(p.Data) != 1 || p.Data[0].Event != "TASK.CREATED" || p.Data[0].Attempts != 1 {
		t.Errorf("ev07 = %+v, want its delivery with event TASK.CREATED and 1 attempt", p.Data)
	}
	for _, f := range []string{`"last_status_code":`, `"last_error":`, `"updated_at":`, `"created_at":`} {
		if a := b.ok(t, 200, "GET", "/v1/deliveries?limit=1", tok, nil); !strings.Contains(string(a.body), f) {
			t.Errorf("item lacks %s: %s", f, a.body)
		}
	}
}

// A bad parameter is a 400 whose message starts with its name.
func TestBadParametersNamed(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	tok := token(t, 1, "read write")
	long := strings.Repeat("x", 65)
	tests := []struct{ method, path, body, param string }{
		{"GET", "/v1/deliveries?limit=0", "", "limit"},
		{"GET", "/v1/deliveries?limit=101", "", "limit"},
		{"GET", "/v1/deliveries?limit=ten", "", "limit"},
		{"GET", "/v1/webhooks?limit=-1", "", "limit"},
		{"GET", "/v1/events?limit=1000", "", "limit"},
		{"GET", "/v1/deliveries?since=yesterday", "", "since"},
		{"GET", "/v1/deliveries?until=2026-13-01T00:00:00Z", "", "until"},
		{"GET", "/v1/events?since=2026-12-01", "", "since"},
		{"GET", "/v1/deliveries?cursor=not-a-cursor", "", "cursor"},
		{"GET", "/v1/events?cursor=" + encodeCursor(keyOf(time.Now(), "")), "", "cursor"},
		{"GET", "/v1/webhooks?cursor=%%%", "", "query"},
		{"GET", "/v1/deliveries?status=lost", "", "status"},
		{"GET", "/v1/deliveries?webhook_id=abc", "", "webhook_id"},
		{"GET", "/v1/deliveries?webhook_id=0", "", "webhook_id"},
		{"GET", "/v1/deliveries?event=task.created", "", "event"},
		{"GET", "/v1/deliveries?event_id=" + long, "", "event_id"},
		{"GET", "/v1/deliveries?stauts=failed", "", "stauts"},
		{"GET", "/v1/deliveries?status=failed&status=pending", "", "status"},
		{"GET", "/v1/webhooks/abc", "", "id"},
		{"GET", "/v1/webhooks/0", "", "id"},
		{"GET", "/v1/deliveries/has.a.dot", "", "id"},
		{"GET", "/v1/events/" + long, "", "id"},
		{"POST", "/v1/deliveries/retry", "", "body"},
		{"POST", "/v1/deliveries/retry", "{}", "body"},
		{"POST", "/v1/deliveries/retry", `{"status":"lost"}`, "status"},
		{"POST", "/v1/deliveries/retry", `{"status":"failed","since":"soon"}`, "since"},
		{"POST", "/v1/deliveries/retry", `{"webhook_id":"one"}`, "webhook_id"},
		{"POST", "/v1/deliveries/retry", `{"webhook_id":0}`, "webhook_id"},
		{"POST", "/v1/deliveries/retry", `{"status":"failed","force":true}`, "body"},
		{"POST", "/v1/deliveries/retry", `{"status":"failed"} {}`, "body"},
		{"POST", "/v1/deliveries/retry", `{"status":`, "body"},
		{"POST", "/v1/deliveries/retry", `{"status":"failed","pad":"` + strings.Repeat("x", 64<<10) + `"}`, "body"},
		{"POST", "/v1/webhooks/1/enable", `{"replay_since":"last week"}`, "replay_since"},
		{"POST", "/v1/webhooks/1/enable", `{"replay_since":""}`, "replay_since"},
		{"POST", "/v1/webhooks/1/enable", `[]`, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+clip(tt.body), func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			a := b.call(t, tt.method, tt.path, tok, body)
			if a.status != 400 {
				t.Fatalf("status = %d %s, want 400", a.status, a.body)
			}
			if msg := a.errorText(t); !strings.HasPrefix(msg, tt.param+":") {
				t.Errorf("error %q does not start with %q", msg, tt.param+":")
			}
		})
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []string{"d1", "a.b.c", "ünï", "42"} {
		k := keyOf(time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC), id)
		got, ok := decodeCursor(encodeCursor(k))
		if !ok || !got.At.Equal(k.At) || got.ID != id {
			t.Errorf("cursor of %+v decodes to %+v, %v", k, got, ok)
		}
	}
	for _, bad := range []string{"", "!!", "MTIz", "eC5k"} {
		if _, ok := decodeCursor(bad); ok {
			t.Errorf("decodeCursor(%q) accepted", bad)
		}
	}
}

func keyOf(at time.Time, id string) repository.Key { return repository.Key{At: at, ID: id} }
