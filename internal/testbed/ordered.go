package testbed

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// OrderedEventID is the id of an object's event number index (from 0) in the tests of
// per-object ordering: "<object>-<index>". OrderedReceiver reads the index back from it.
func OrderedEventID(object string, index int) string { return object + "-" + strconv.Itoa(index) }

// OrderedHit is one request an OrderedReceiver got.
type OrderedHit struct {
	Event    string
	Object   string
	Index    int // the event's place in its object's publish order, from 0
	Attempt  int
	Sequence string // X-Webhook-Sequence
	Start    time.Time
	End      time.Time
	Status   int
}

// OrderedReceiver is a real HTTP server for the ordering tests. It answers 500 to the first
// attempt of every event whose index Fail picks and 200 to anything else, after a short
// while, so that requests made together overlap, and it records every request.
type OrderedReceiver struct {
	URL string
	// Fail picks the events whose first attempt fails.
	Fail func(index int) bool

	mu       sync.Mutex
	hits     []OrderedHit
	inFlight int
	most     int
}

// NewOrderedReceiver starts an OrderedReceiver, closed when the test ends.
func NewOrderedReceiver(t testing.TB, fail func(index int) bool) *OrderedReceiver {
	rc := &OrderedReceiver{Fail: fail}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// ServeHTTP answers one attempt.
func (rc *OrderedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p struct {
		ID     string `json:"eventId"`
		Object string `json:"objectId"`
	}
	json.Unmarshal(body, &p)
	h := OrderedHit{Event: p.ID, Object: p.Object, Sequence: r.Header.Get("X-Webhook-Sequence"), Start: time.Now()}
	h.Attempt, _ = strconv.Atoi(r.Header.Get("X-Webhook-Attempt"))
	if len(p.ID) > len(p.Object) {
		h.Index, _ = strconv.Atoi(p.ID[len(p.Object)+1:])
	}
	rc.mu.Lock()
	rc.inFlight++
	rc.most = max(rc.most, rc.inFlight)
	rc.mu.Unlock()
	// The receiver's own work, so that requests in flight together overlap.
	select {
	case <-time.After(5 * time.Millisecond):
	case <-r.Context().Done():
	}
	h.Status = http.StatusOK
	if h.Attempt == 1 && rc.Fail != nil && rc.Fail(h.Index) {
		h.Status = http.StatusInternalServerError
	}
	h.End = time.Now()
	rc.mu.Lock()
	rc.inFlight--
	rc.hits = append(rc.hits, h)
	rc.mu.Unlock()
	w.WriteHeader(h.Status)
}

// Hits returns the requests received so far, in the order their answers went.
func (rc *OrderedReceiver) Hits() []OrderedHit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]OrderedHit(nil), rc.hits...)
}

// Succeeded counts the distinct events answered 200.
func (rc *OrderedReceiver) Succeeded() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ok := map[string]bool{}
	for _, h := range rc.hits {
		if h.Status == http.StatusOK {
			ok[h.Event] = true
		}
	}
	return len(ok)
}

// Check asserts per-object ordering on everything received: for each of objects objects,
// perObject events succeeded, a request for an event came only once the one before had
// succeeded (never before, never beside it), and every request carried the event's sequence
// number, its index + 1. Requests for an event that had succeeded already are duplicates,
// which at-least-once allows: Check returns how many there were. It also returns how many
// requests were in flight at once at most.
func (rc *OrderedReceiver) Check(t testing.TB, objects, perObject int) (duplicates, most int) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	byObject := map[string][]OrderedHit{}
	for _, h := range rc.hits {
		byObject[h.Object] = append(byObject[h.Object], h)
	}
	if len(byObject) != objects {
		t.Errorf("requests for %d objects, want %d", len(byObject), objects)
	}
	for obj, hits := range byObject {
		next := 0 // the index whose success comes next
		var lastOK time.Time
		for _, h := range hits {
			if want := strconv.Itoa(h.Index + 1); h.Sequence != want {
				t.Errorf("%s attempt %d: X-Webhook-Sequence %q, want %s", h.Event, h.Attempt, h.Sequence, want)
			}
			switch {
			case h.Index < next:
				duplicates++
				continue
			case h.Index > next:
				t.Errorf("object %s: request for event %d (attempt %d) before event %d had succeeded", obj, h.Index, h.Attempt, next)
				continue
			case h.Start.Before(lastOK):
				t.Errorf("object %s: event %d started before event %d's answer", obj, h.Index, h.Index-1)
			}
			if h.Status == http.StatusOK {
				next++
				lastOK = h.End
			}
		}
		if next != perObject {
			t.Errorf("object %s: %d events succeeded in order, want %d", obj, next, perObject)
		}
	}
	return duplicates, rc.most
}

// PublishOrdered publishes perObject events for each of objects objects, interleaved: every
// object's first event, then every object's second, and so on, on one channel.
func (b *Bed) PublishOrdered(name string, objects, perObject int) {
	for i := range perObject {
		for o := range objects {
			obj := fmt.Sprintf("o%d", o)
			b.PublishEvent(name, Event(OrderedEventID(obj, i), name, 1, `"objectId":"`+obj+`"`))
		}
	}
}
