//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// headerForged names each forged message, so that its copy in the dead queue can be told.
const headerForged = "x-test-forged"

// forged is a message of the worker's own kinds, made up by someone else.
type forged struct {
	name string
	msg  amqp.Publishing
	// dead is part of the reason the message must be dead-lettered with; "" when it must
	// not be dead-lettered.
	dead string
}

// TestForgedRetryAndPostponedMessages publishes, straight to the work queue and while ordinary
// events flow, retry and postponed messages the worker never published: malformed headers and
// bodies, unknown delivery ids, wrong attempt numbers, and attempts of deliveries that already
// succeeded. The malformed ones and the unknown ids (once REPAIR_AFTER has passed without a
// row) end in the dead queue with their reason; the others are dropped without a request;
// every event is delivered once, and the worker neither crashes nor loops.
func TestForgedRetryAndPostponedMessages(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	const repairAfter = 3 * time.Second
	p := StartProc(t, bed, ProcOptions{RepairAfter: repairAfter})
	h0, h1 := l.Hooks[0], l.Hooks[1]

	var first []string
	for range 10 {
		id := l.NextID()
		first = append(first, id)
		if err := l.Publish(id); err != nil {
			t.Fatal(err)
		}
	}
	testbed.Eventually(t, 30*time.Second, "the first events delivered", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded'") == len(first)*len(l.Hooks)
	})
	ev0, ev1 := first[0], first[1]
	s0, s1 := repository.DeliveryID(ev0, h0), repository.DeliveryID(ev1, h1)
	const noSuchWebhook = 999999
	ghost := "never-published"
	ghostID, orphanID := repository.DeliveryID(ghost, h0), repository.DeliveryID(ev0, noSuchWebhook)
	// Not orphanID: the forged postponed delivery below gives that one a row.
	orphanRetry := repository.DeliveryID(ev1, noSuchWebhook)

	retryMsg := func(h amqp.Table, body string) amqp.Publishing {
		return amqp.Publishing{Type: broker.TypeRetry, Headers: h, Body: []byte(body)}
	}
	ids := func(id string, attempt, step any) amqp.Table {
		return amqp.Table{broker.HeaderDelivery: id, broker.HeaderAttempt: attempt, broker.HeaderStep: step}
	}
	postponed := func(body string) amqp.Publishing {
		return amqp.Publishing{Type: broker.TypePostponed, ContentType: "application/json", Body: []byte(body)}
	}
	entry := func(delivery, event string, webhook uint64, attempt, step int) map[string]any {
		return map[string]any{"delivery": delivery, "event": event, "webhook": webhook, "attempt": attempt, "step": step}
	}
	entries := func(es ...map[string]any) string {
		b, err := json.Marshal(es)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const badRetry = "retry message without valid"
	const badPostponed = "postponed deliveries:"
	unknown := strings.Repeat("f", 32)
	waitingSince := ids(strings.Repeat("e", 32), int32(2), int32(1))
	waitingSince[broker.HeaderWaitingSince] = int64(1) // 1970: waited far longer than REPAIR_AFTER
	notANumber := ids(strings.Repeat("d", 32), int32(2), int32(1))
	notANumber[broker.HeaderWaitingSince] = "yesterday"
	cases := []forged{
		{"retry: no headers", retryMsg(nil, ""), badRetry},
		{"retry: attempt a string", retryMsg(ids(s0, "2", int32(1)), ""), badRetry},
		{"retry: attempt a float", retryMsg(ids(s0, 2.0, int32(1)), ""), badRetry},
		{"retry: attempt 0", retryMsg(ids(s0, int32(0), int32(0)), ""), badRetry},
		{"retry: attempt -3", retryMsg(ids(s0, int32(-3), int32(0)), ""), badRetry},
		{"retry: step -1", retryMsg(ids(s0, int32(2), int32(-1)), ""), badRetry},
		{"retry: delivery id a number", retryMsg(amqp.Table{broker.HeaderDelivery: int32(5), broker.HeaderAttempt: int32(2), broker.HeaderStep: int32(1)}, ""), badRetry},
		{"retry: empty delivery id", retryMsg(ids("", int32(2), int32(1)), ""), badRetry},
		{"retry: unknown delivery id", retryMsg(ids(unknown, int32(2), int32(1)), ""), "unknown delivery id"},
		{"retry: unknown delivery id, waiting since 1970", retryMsg(waitingSince, ""), "unknown delivery id"},
		{"retry: unknown delivery id, waiting since not a number", retryMsg(notANumber, ""), "unknown delivery id"},
		{"retry: a real event, a webhook that does not exist", retryMsg(ids(orphanRetry, int32(2), int32(1)), ""), "unknown delivery id"},
		{"retry: succeeded delivery, attempt 2", retryMsg(ids(s0, int32(2), int32(1)), ""), ""},
		{"retry: succeeded delivery, attempt 1 step 0", retryMsg(ids(s0, int32(1), int32(0)), ""), ""},
		{"retry: succeeded delivery, attempt 99 step 99", retryMsg(ids(s1, int32(99), int32(99)), ""), ""},
		{"retry: succeeded delivery, int64 headers and a body", retryMsg(ids(s1, int64(2), int64(1)), `{"id":"x"}`), ""},

		{"postponed: not JSON", postponed("not json"), badPostponed},
		{"postponed: empty array", postponed("[]"), badPostponed},
		{"postponed: an object", postponed(`{"delivery":"` + s0 + `"}`), badPostponed},
		{"postponed: fields of the wrong types", postponed(`[{"delivery":1,"event":true,"webhook":"x","attempt":"1"}]`), badPostponed},
		{"postponed: entry without event", postponed(entries(entry(s0, "", h0, 2, 1))), badPostponed},
		{"postponed: attempt 0", postponed(entries(entry(s0, ev0, h0, 0, 0))), badPostponed},
		{"postponed: step -1", postponed(entries(entry(s0, ev0, h0, 2, -1))), badPostponed},
		{"postponed: delivery id not of its event and webhook", postponed(entries(entry(s1, ev0, h0, 2, 1))), "not a valid delivery"},
		{"postponed: succeeded delivery, attempt 2", postponed(entries(entry(s0, ev0, h0, 2, 1))), ""},
		{"postponed: succeeded delivery, first attempt", postponed(entries(entry(s0, ev0, h0, 1, 0))), ""},
		{"postponed: two succeeded deliveries, attempt 99", postponed(entries(entry(s0, ev0, h0, 99, 99), entry(s1, ev1, h1, 99, 99))), ""},
		{"postponed: an event never published", postponed(entries(entry(ghostID, ghost, h0, 1, 0))), ""},
		{"postponed: a webhook that does not exist", postponed(entries(entry(orphanID, ev0, noSuchWebhook, 1, 0))), ""},
	}

	flow := l.Flow(100, 10*time.Millisecond)
	wantDead := map[string]string{}
	kinds := map[string]int{}
	for _, c := range cases {
		if c.msg.Headers == nil {
			c.msg.Headers = amqp.Table{}
		}
		c.msg.Headers[headerForged] = c.name
		if err := l.PublishRaw("", bed.Queue, c.msg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.dead != "" {
			wantDead[c.name] = c.dead
			kinds[c.msg.Type]++
		}
	}
	flow.Wait(t)

	dead := bed.Queue + ".dead"
	// Unknown ids wait REPAIR_AFTER for a row first. On timeout, the comparison below says
	// which are missing.
	if !poll(30*time.Second, 50*time.Millisecond, func() bool { return bed.QueueDepth(dead) >= len(wantDead) }) {
		t.Errorf("dead queue holds %d messages 30s after the forged ones were published, want %d", bed.QueueDepth(dead), len(wantDead))
	}
	gotDead := map[string]string{}
	for range bed.QueueDepth(dead) {
		d := bed.Get(dead, 5*time.Second)
		name, _ := d.Headers[headerForged].(string)
		reason, _ := d.Headers[broker.HeaderError].(string)
		gotDead[name] = reason
	}
	for _, c := range cases {
		reason, ok := gotDead[c.name]
		switch {
		case c.dead == "" && ok:
			t.Errorf("%s: dead-lettered (%q), want it dropped", c.name, reason)
		case c.dead != "" && !ok:
			t.Errorf("%s: not dead-lettered, want a reason with %q", c.name, c.dead)
		case c.dead != "" && !strings.Contains(reason, c.dead):
			t.Errorf("%s: dead-lettered with reason %q, want it to say %q", c.name, reason, c.dead)
		}
	}
	for name, reason := range gotDead {
		t.Logf("dead: %-58s %s", name, reason)
	}

	tally := l.Check(t, "forged retry and postponed messages", 60*time.Second, Expect{DuplicatePercent: 1})
	// Every request is a pair's one attempt: no forged message made a request.
	if tally.Requests != tally.Pairs {
		t.Errorf("requests = %d for %d pairs, want one each: a forged message made a request", tally.Requests, tally.Pairs)
	}
	hits := attemptsByDelivery(l.Hits())
	for _, id := range []string{s0, s1} {
		if a := hits[id]; len(a) != 1 || a[0] != 1 {
			t.Errorf("succeeded delivery %s: attempts %v after forged retries, want [1]", id, a)
		}
	}
	for _, c := range []struct{ id, reason string }{{ghostID, "event no longer stored"}, {orphanID, "webhook deleted"}} {
		if len(hits[c.id]) != 0 {
			t.Errorf("delivery %s: %d requests, want none", c.id, len(hits[c.id]))
		}
		if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE id=? AND status='failed' AND attempts=0 AND last_error=?", c.id, c.reason); n != 1 {
			t.Errorf("delivery %s: no failed row with reason %q", c.id, c.reason)
		}
	}
	for kind, n := range kinds {
		series := fmt.Sprintf(`webhookd_dead_lettered_total{kind=%q}`, kind)
		if got := p.Metric(series); got != float64(n) {
			t.Errorf("%s = %v, want %d", series, got, n)
		}
	}
	if p.Exited() || p.Ready() != http.StatusOK {
		t.Errorf("worker exited (%v) or not ready (%d)", p.Exited(), p.Ready())
	}
	if p.LogContains("panic") {
		t.Errorf("worker logged a panic")
	}
}

// TestBrokenWebhookURLs gives an event's webhooks beside two healthy ones: URLs that do not
// parse, that are not http or https, that are empty, have no host or a numeric host, a host
// that does not resolve, an http server behind https, a port nobody listens on; and one with
// an empty token. The healthy ones, and the one without a token (signed with an empty key),
// get every event; each broken one fails every delivery with its reason, at once when no
// retry can help and after the ladder otherwise; the worker goes on.
func TestBrokenWebhookURLs(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	host := strings.TrimPrefix(l.HookURL(0), "http://")
	host = host[:strings.IndexByte(host, '/')]
	ladder := retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond}
	attempts := 1 + len(ladder)
	broken := []struct {
		url, reason string
		attempts    int
	}{
		{"", "invalid webhook URL: no scheme", 1},
		{"http://exa mple.com/hook", "invalid webhook URL: invalid character", 1},
		{"http://[::1/hook", "invalid webhook URL: missing ']'", 1},
		{"ftp://" + host + "/hook", `invalid webhook URL: scheme "ftp" is not http or https`, 1},
		{"http:///hook", "invalid webhook URL: no host", 1},
		{"http://2130706433/hook", "invalid webhook URL: host \"2130706433\" is not a dotted-decimal", 1},
		{"http://webhookd-no-such-host.invalid/hook", "no such host", attempts},
		{"https://" + host + "/hook", "server gave HTTP response to HTTPS client", attempts},
		{"http://" + freeAddr(t) + "/hook", "connection refused", attempts},
	}
	var brokenHooks []uint64
	for _, b := range broken {
		brokenHooks = append(brokenHooks, l.AddWebhook(b.url, "token-"+bed.Name))
	}
	noToken := l.AddWebhook(l.HookURL(len(l.Hooks)), "")
	p := StartProc(t, bed, ProcOptions{Ladder: ladder, HTTPTimeout: 2 * time.Second})

	const events = 20
	for range events {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	l.Check(t, "broken webhook URLs beside healthy ones", 60*time.Second, Expect{Failed: events * len(broken), DuplicatePercent: 1})

	for i, b := range broken {
		w := brokenHooks[i]
		n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id=? AND status='failed' AND attempts=? AND last_error LIKE ?",
			w, b.attempts, "%"+b.reason+"%")
		if n != events {
			var last string
			bed.Store.DB().Get(&last, "SELECT COALESCE(last_error, '') FROM deliveries WHERE webhook_id=? LIMIT 1", w)
			t.Errorf("webhook %d (%q): %d of %d deliveries failed after %d attempts saying %q; one says %q",
				w, b.url, n, events, b.attempts, b.reason, last)
		}
		if n := bed.Count("SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id=a.delivery_id WHERE d.webhook_id=?", w); n != events*b.attempts {
			t.Errorf("webhook %d (%q): %d attempts logged, want %d", w, b.url, n, events*b.attempts)
		}
	}
	healthy := append([]uint64{l.Hooks[0], l.Hooks[1]}, noToken)
	for _, w := range healthy {
		if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id=? AND status='succeeded' AND attempts=1", w); n != events {
			t.Errorf("healthy webhook %d: %d of %d deliveries succeeded at once", w, n, events)
		}
	}
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE enabled=0"); n != 0 {
		t.Errorf("%d webhooks disabled, want none (DISABLE_AFTER=0)", n)
	}
	if p.Exited() || p.Ready() != http.StatusOK {
		t.Errorf("worker exited (%v) or not ready (%d)", p.Exited(), p.Ready())
	}
	if p.LogContains("panic") {
		t.Errorf("worker logged a panic")
	}
}
