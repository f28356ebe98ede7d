package delivery_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// peakPerSecond is the most of times (sorted) in any one-second window, [t, t+1s).
func peakPerSecond(times []time.Time) int {
	peak, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < time.Second {
			j++
		}
		peak = max(peak, j-i)
	}
	return peak
}

func requestTimes(reqs []testbed.Request) []time.Time {
	ts := make([]time.Time, len(reqs))
	for i, r := range reqs {
		ts[i] = r.At
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// TestRateLimitAcrossWorkers runs three workers on one queue and three webhooks limited to
// 5, 25 and 100 attempts a second, with a backlog of events for each published at once: the
// receiver never gets more than the limit + 10 % in any one-second window, and every delivery
// arrives once, as attempt 1 (waiting for the limit uses no attempt).
func TestRateLimitAcrossWorkers(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	limits := []struct{ limit, events int }{{5, 50}, {25, 200}, {100, 400}}
	hooks := make([]uint64, len(limits))
	for i, l := range limits {
		hooks[i] = bed.AddWebhook(testbed.Webhook{Account: uint64(20 + i), Event: "TASK.CREATED", URL: fmt.Sprintf("%s/limit-%d", rc.URL, l.limit)})
		bed.Exec("UPDATE webhooks SET rate_limit = ? WHERE id = ?", l.limit, hooks[i])
	}
	for i := range 3 {
		bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{time.Second}, Name: fmt.Sprintf("%s-%d", bed.Name, i)})
	}
	start := time.Now()
	for n := range limits[len(limits)-1].events {
		for i, l := range limits {
			if n < l.events {
				bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("rl-%d-%d", l.limit, n), "TASK.CREATED", 20+i, ""))
			}
		}
	}
	t.Logf("published %d events in %v", 650, time.Since(start).Round(time.Millisecond))
	for i, l := range limits {
		path := fmt.Sprintf("/limit-%d", l.limit)
		// At the limit the backlog takes events/limit seconds; allow for a loaded machine.
		reqs := rc.Wait(t, path, l.events, time.Duration(l.events/l.limit)*2*time.Second+30*time.Second)
		seen := map[string]int{}
		for _, r := range reqs {
			seen[r.Header.Get("X-Webhook-Delivery")]++
			if a := r.Header.Get("X-Webhook-Attempt"); a != "1" {
				t.Errorf("limit %d/s: a request with X-Webhook-Attempt %s, want 1", l.limit, a)
			}
		}
		for n := range l.events {
			if id := repository.DeliveryID(fmt.Sprintf("rl-%d-%d", l.limit, n), hooks[i]); seen[id] != 1 {
				t.Errorf("limit %d/s: delivery of event %d made %d times, want once", l.limit, n, seen[id])
			}
		}
		ts := requestTimes(reqs)
		peak, allowed := peakPerSecond(ts), l.limit+l.limit/10
		took := ts[len(ts)-1].Sub(ts[0])
		t.Logf("limit %d/s: %d deliveries in %v (%.1f/s), peak %d in any one-second window (allowed %d)",
			l.limit, len(ts), took.Round(time.Millisecond), float64(len(ts)-1)/took.Seconds(), peak, allowed)
		if peak > allowed {
			t.Errorf("limit %d/s: %d requests in one second, want at most %d", l.limit, peak, allowed)
		}
	}
	testbed.Eventually(t, wait, "every delivery recorded as attempt 1", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='succeeded' AND attempts=1") == 650
	})
}

// TestRetryAfterPausesWebhook: a 429 with Retry-After, in seconds or as an HTTP date, pauses
// every delivery to that webhook, not only the one that got it: nothing reaches it until
// then, a webhook beside it is not held up, and afterwards every delivery arrives.
func TestRetryAfterPausesWebhook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after func(now time.Time) (header string, until time.Time)
	}{
		{"seconds", func(now time.Time) (string, time.Time) { return "3", now.Add(3 * time.Second) }},
		{"HTTP date", func(now time.Time) (string, time.Time) {
			// A date has whole seconds: at least 3 s ahead.
			until := now.Add(4 * time.Second).Truncate(time.Second)
			return until.UTC().Format(http.TimeFormat), until
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bed := testbed.New(t)
			rc := testbed.NewReceiver(t)
			var mu sync.Mutex
			var until, answered time.Time
			rc.Respond(func(r *http.Request, n int) (int, http.Header) {
				if r.URL.Path != "/paused" || n > 0 {
					return http.StatusOK, nil
				}
				mu.Lock()
				defer mu.Unlock()
				var h string
				answered = time.Now()
				h, until = tt.after(answered)
				return http.StatusTooManyRequests, http.Header{"Retry-After": {h}}
			})
			paused := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/paused"})
			bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/beside"})
			// The 429's delivery takes the shortest ladder delay not shorter than the wait.
			bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{200 * time.Millisecond, 6 * time.Second}})
			bed.PublishEvent("TASK.CREATED", testbed.Event("first", "TASK.CREATED", 1, ""))
			rc.Wait(t, "/paused", 1, wait)
			testbed.Eventually(t, wait, "the pause stored", func() bool {
				return bed.Count("SELECT COUNT(*) FROM pauses WHERE webhook_id = ?", paused) == 1
			})
			const later = 20
			for i := range later {
				bed.PublishEvent("TASK.CREATED", testbed.Event("later-"+strconv.Itoa(i), "TASK.CREATED", 1, ""))
			}
			beside := rc.Wait(t, "/beside", later+1, wait)
			mu.Lock()
			end, got := until, answered
			mu.Unlock()
			if last := requestTimes(beside)[later]; !last.Before(end) {
				t.Errorf("the webhook beside got its deliveries by %v after the 429, want them before the pause ended (%v)", last.Sub(got), end.Sub(got))
			}
			testbed.Eventually(t, wait, "every paused delivery to succeed", func() bool {
				return bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND status = 'succeeded'", paused) == later+1
			})
			reqs := rc.Requests("/paused")
			for _, r := range reqs[1:] {
				if r.At.Before(end) {
					t.Errorf("a request %v after the 429, before its Retry-After (%v)", r.At.Sub(got).Round(time.Millisecond), end.Sub(got).Round(time.Millisecond))
				}
			}
			ts := requestTimes(reqs[1:])
			t.Logf("429 with Retry-After until %v later: next request %v after the 429, the %d held ones by %v",
				end.Sub(got).Round(time.Millisecond), ts[0].Sub(got).Round(time.Millisecond), len(ts), ts[len(ts)-1].Sub(got).Round(time.Millisecond))
			if n := len(reqs); n != later+2 {
				t.Errorf("paused webhook got %d requests, want %d: the 429, its retry and one per later event", n, later+2)
			}
		})
	}
}

// TestRateLimitFanOut fans a backlog of events out to 100 webhooks, each limited to 5 a
// second: most deliveries wait for their slots in the hold queues, hundreds to a message, and
// still go within their webhook's limit, each once, as attempt 1, about as fast as the limits
// allow (10 events need 2 s at 4.5/s).
func TestRateLimitFanOut(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	const hooks, events = 100, 10
	for i := range hooks {
		id := bed.AddWebhook(testbed.Webhook{Account: 30, Event: "TASK.CREATED", URL: fmt.Sprintf("%s/fan-%d", rc.URL, i)})
		bed.Exec("UPDATE webhooks SET rate_limit = 5 WHERE id = ?", id)
	}
	bed.StartWorker(testbed.WorkerOptions{Concurrency: 64, Prefetch: 256})
	for n := range events {
		bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("fan-%d", n), "TASK.CREATED", 30, ""))
	}
	start := time.Now()
	testbed.Eventually(t, time.Minute, "every delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") == hooks*events
	})
	took := time.Since(start)
	peak := 0
	for i := range hooks {
		reqs := rc.Requests(fmt.Sprintf("/fan-%d", i))
		if len(reqs) != events {
			t.Errorf("webhook %d got %d requests, want %d", i, len(reqs), events)
		}
		for _, r := range reqs {
			if a := r.Header.Get("X-Webhook-Attempt"); a != "1" {
				t.Errorf("webhook %d: a request with X-Webhook-Attempt %s, want 1", i, a)
			}
		}
		ts := requestTimes(reqs)
		if p := peakPerSecond(ts); p > 5 {
			var gaps []string
			for k := 1; k < len(ts); k++ {
				gaps = append(gaps, ts[k].Sub(ts[k-1]).Round(time.Millisecond).String())
			}
			t.Logf("webhook %d: %d in one second; gaps between its requests %v", i, p, gaps)
		}
		peak = max(peak, peakPerSecond(ts))
	}
	if peak > 5 {
		t.Errorf("a webhook got %d requests in one second, want at most 5", peak)
	}
	t.Logf("%d webhooks limited to 5/s, %d events each: all delivered %v after the last publish (the slots of one webhook span %v), peak %d a second per webhook",
		hooks, events, took.Round(time.Millisecond), (events-1)*240*time.Millisecond, peak)
}
