package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// wait bounds every poll of the tests.
const wait = 20 * time.Second

// testSecret signs the tests' tokens; otherSecret signs tokens the server must refuse.
var (
	testSecret  = []byte("test-secret-of-at-least-32-bytes!!")
	otherSecret = []byte("another-secret-of-32-bytes-or-more")
)

// apiBed is a test's API server on its own database, exchange and queues, with the
// publisher a `webhookd api` has.
type apiBed struct {
	*testbed.Bed
	srv *Server
	url string
}

// newAPIBed starts an API server on a fresh bed. ladder is the retry ladder of the worker
// the test starts, if any, so that both declare the same queues; tune changes the server
// before it serves.
func newAPIBed(t *testing.T, ladder retry.Ladder, tune ...func(*Server)) *apiBed {
	t.Helper()
	bed := testbed.New(t)
	if ladder == nil {
		ladder = testbed.DefaultLadder
	}
	bed.TrackLadder(ladder)
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub := broker.NewPublisher(testbed.AMQPURL, bed.Name+" api", log)
	pub.OnConnect = broker.Topology{Exchange: bed.Exchange, Queue: bed.Queue, QueueType: "quorum", Ladder: ladder}.Declare
	srv, err := New(Options{Secret: testSecret, Queue: bed.Queue, UserAgent: "webhookd/test", Log: log}, bed.Store, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tune {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pubDone, srvDone := make(chan struct{}), make(chan error, 1)
	go func() { pub.Run(ctx); close(pubDone) }()
	go func() { srvDone <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-pubDone
		if err := <-srvDone; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	testbed.Eventually(t, wait, "the API's publisher to connect", pub.Ready)
	return &apiBed{Bed: bed, srv: srv, url: "http://" + ln.Addr().String()}
}

// token mints a token for account with scope, valid for an hour.
func token(t testing.TB, account uint64, scope string) string {
	t.Helper()
	tok, err := Mint(testSecret, account, scope, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is one response of the API.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body into v, failing the test if it is not JSON.
func (a answer) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
}

// errorText is the message of an {"error": …} answer.
func (a answer) errorText(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	a.json(t, &e)
	if e.Error == "" {
		t.Fatalf("answer %d has no error message: %s", a.status, a.body)
	}
	return e.Error
}

// call sends a request with tok as its bearer token (none when empty) and an optional body:
// a string is sent as is, anything else as JSON.
func (b *apiBed) call(t testing.TB, method, path, tok string, body any) answer {
	t.Helper()
	var r io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: raw}
}

// ok calls and fails the test unless the answer has status want.
func (b *apiBed) ok(t testing.TB, want int, method, path, tok string, body any) answer {
	t.Helper()
	a := b.call(t, method, path, tok, body)
	if a.status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, a.status, a.body, want)
	}
	return a
}

// delivery is the JSON of one delivery, as lists and the detail answer it.
type delivery struct {
	ID        string    `json:"id"`
	EventID   string    `json:"event_id"`
	Event     string    `json:"event"`
	WebhookID uint64    `json:"webhook_id"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
}

type deliveryPage struct {
	Data       []delivery `json:"data"`
	NextCursor *string    `json:"next_cursor"`
}

// insertDelivery writes an event and its delivery to webhook as of at, directly: lists and
// filters are tested on rows whose times the test chose.
func (b *apiBed) insertDelivery(t testing.TB, eventID string, webhook uint64, status string, at time.Time, objectID string) string {
	t.Helper()
	var account uint64
	if err := b.Store.DB().Get(&account, "SELECT account_id FROM webhooks WHERE id = ?", webhook); err != nil {
		t.Fatal(err)
	}
	var obj any
	if objectID != "" {
		obj = objectID
	}
	b.Exec("INSERT IGNORE INTO events (id, event, account_id, object_id, occurred_at, data, received_at) VALUES (?, 'TASK.CREATED', ?, ?, ?, '{}', ?)",
		eventID, account, obj, at.UTC().Format(time.RFC3339Nano), at.UTC())
	id := fmt.Sprintf("d%s_%d", eventID, webhook)
	b.Exec("INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
		id, eventID, webhook, status, at.UTC(), at.UTC())
	return id
}

// status is the status of delivery id in the log.
func (b *apiBed) status(t testing.TB, id string) (status string, attempts int) {
	t.Helper()
	row := b.Store.DB().QueryRow("SELECT status, attempts FROM deliveries WHERE id = ?", id)
	if err := row.Scan(&status, &attempts); err != nil {
		return "", 0
	}
	return status, attempts
}
