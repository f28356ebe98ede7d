package api

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
)

type eventItem struct {
	ID         string          `json:"id"`
	Event      string          `json:"event"`
	ProjectID  *int64          `json:"project_id"`
	ObjectID   json.RawMessage `json:"object_id"`
	OccurredAt string          `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	// Data keeps the answer's bytes: json.RawMessage is filled as is, not re-encoded.
	Data       json.RawMessage `json:"data"`
	Deliveries []delivery      `json:"deliveries"`
}

type eventPage struct {
	Data       []eventItem `json:"data"`
	NextCursor *string     `json:"next_cursor"`
}

// Polling returns each event's data byte for byte as the monolith published it: spacing,
// escapes, big numbers and all. Filters and pages work as for deliveries.
func TestEventsPolling(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	rc := testbed.NewReceiver(t)
	hook := b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/c"})
	b.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.DELETED", URL: rc.URL + "/d"})
	b.AddWebhook(testbed.Webhook{Account: 2, Event: "TASK.CREATED", URL: rc.URL + "/two"})
	b.StartWorker(testbed.WorkerOptions{})

	data := "{  \"big\": 123456789012345678901234567890.50, \"html\": \"<b>&amp;</b>\",\n\t\"esc\": \"\\u00e9\\n\\/\", \"utf\": \"é😀\", \"list\": [ 1 , 2 ] }"
	b.PublishEvent("TASK.CREATED", `{"id":"poll-1","event":"TASK.CREATED","accountId":1,"projectId":4,"objectId":77,`+
		`"occurredAt":"2026-12-01T10:00:00+02:00","data": `+data+` }`)
	rc.Wait(t, "/c", 1, wait)
	b.PublishEvent("TASK.CREATED", testbed.Event("poll-2", "TASK.CREATED", 1, `"objectId":"abc/def","data":[1,2]`))
	rc.Wait(t, "/c", 2, wait)
	b.PublishEvent("TASK.DELETED", testbed.Event("poll-3", "TASK.DELETED", 1, `"objectId":77`))
	rc.Wait(t, "/d", 1, wait)
	b.PublishEvent("TASK.CREATED", testbed.Event("poll-theirs", "TASK.CREATED", 2, `"objectId":77`))
	rc.Wait(t, "/two", 1, wait)
	tok := token(t, 1, "read")

	list := func(query string) []eventItem {
		t.Helper()
		var p eventPage
		b.ok(t, 200, "GET", "/v1/events?"+query, tok, nil).json(t, &p)
		return p.Data
	}
	ids := func(items []eventItem) string {
		var s []string
		for _, e := range items {
			s = append(s, e.ID)
		}
		return strings.Join(s, ",")
	}
	all := list("")
	if got := ids(all); got != "poll-3,poll-2,poll-1" {
		t.Fatalf("events = %s, want poll-3,poll-2,poll-1 (newest first, account 1 only)", got)
	}
	first := all[2]
	if !bytes.Equal(first.Data, []byte(data)) {
		t.Errorf("data answered\n%s\nwant, as published,\n%s", first.Data, data)
	}
	if first.Event != "TASK.CREATED" || first.ProjectID == nil || *first.ProjectID != 4 || string(first.ObjectID) != "77" ||
		first.OccurredAt != "2026-12-01T08:00:00Z" || first.ReceivedAt.IsZero() {
		t.Errorf("poll-1 = %+v", first)
	}
	if string(all[1].ObjectID) != `"abc/def"` || string(all[1].Data) != "[1,2]" || all[1].ProjectID != nil {
		t.Errorf("poll-2 = %+v", all[1])
	}

	since := "since=" + url.QueryEscape(first.ReceivedAt.Format(time.RFC3339Nano))
	until := "until=" + url.QueryEscape(first.ReceivedAt.Add(time.Microsecond).Format(time.RFC3339Nano))
	for query, want := range map[string]string{
		"event=TASK.DELETED":              "poll-3",
		"object_id=77":                    "poll-3,poll-1",
		"object_id=abc%2Fdef":             "poll-2",
		"object_id=78":                    "",
		since:                             "poll-3,poll-2,poll-1",
		until:                             "poll-1",
		"event=TASK.CREATED&object_id=77": "poll-1",
	} {
		if got := ids(list(query)); got != want {
			t.Errorf("events?%s = %q, want %q", query, got, want)
		}
	}

	// One at a time, the pages give each event once, in order.
	var walked []string
	cursor := ""
	for range 10 {
		q := "/v1/events?limit=1"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var p eventPage
		b.ok(t, 200, "GET", q, tok, nil).json(t, &p)
		walked = append(walked, ids(p.Data))
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if got := strings.Join(walked, ","); got != "poll-3,poll-2,poll-1" {
		t.Errorf("pages of one = %s, want poll-3,poll-2,poll-1", got)
	}

	// One event: the same bytes, and its deliveries.
	var one eventItem
	b.ok(t, 200, "GET", "/v1/events/poll-1", tok, nil).json(t, &one)
	if !bytes.Equal(one.Data, []byte(data)) {
		t.Errorf("GET /v1/events/poll-1 data = %s, want %s", one.Data, data)
	}
	if len(one.Deliveries) != 1 || one.Deliveries[0].WebhookID != hook || one.Deliveries[0].Status != "succeeded" {
		t.Errorf("poll-1's deliveries = %+v, want one succeeded to webhook %d", one.Deliveries, hook)
	}
	if a := b.call(t, "GET", "/v1/events/poll-theirs", tok, nil); a.status != 404 {
		t.Errorf("another account's event = %d, want 404", a.status)
	}
	if a := b.call(t, "GET", "/v1/events/"+url.PathEscape("x y/z"), tok, nil); a.status != 404 {
		t.Errorf("an unknown event id with odd characters = %d %s, want 404", a.status, a.body)
	}
}
