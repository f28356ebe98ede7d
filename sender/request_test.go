package sender

import (
	"strconv"
	"testing"
	"time"

	"github.com/webhookd/webhookd/formatter"
	"github.com/webhookd/webhookd/signer"
)

// An attempt's request carries every header of the contract, and both signatures verify over
// its exact body with the token, which appears nowhere in it.
func TestAttemptRequest(t *testing.T) {
	at := time.Unix(1796222640, 987654321)
	project := uint64(3)
	for _, format := range []string{"json", "xml", "form"} {
		a := Attempt{
			URL: "https://hooks.example/in", Format: format, Token: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			DeliveryID: "d1", Number: 4, At: at, UserAgent: "webhookd/1.2.3",
			Event: formatter.Event{Name: "TASK.CREATED", ID: "e1", AccountID: 1, ProjectID: &project, OccurredAt: "2026-12-01T00:00:00Z", Data: []byte(`{"a":1}`)},
		}
		req, err := a.Request()
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		f, _ := formatter.ParseFormat(format)
		body, _ := formatter.Render(f, a.Event)
		if string(req.Body) != string(body) || req.URL != a.URL {
			t.Errorf("%s: request %s %q, want the rendered body to %s", format, req.URL, req.Body, a.URL)
		}
		want := map[string]string{
			HeaderContentType: f.ContentType(), HeaderUserAgent: "webhookd/1.2.3", HeaderEvent: "TASK.CREATED",
			HeaderDelivery: "d1", HeaderAttempt: "4", HeaderStandardID: "d1",
			HeaderStandardTimestamp: strconv.FormatInt(at.Unix(), 10),
		}
		for _, name := range RequestHeaders {
			if w, ok := want[name]; ok && req.Header.Get(name) != w {
				t.Errorf("%s: %s = %q, want %q", format, name, req.Header.Get(name), w)
			}
			for _, v := range req.Header.Values(name) {
				if v == a.Token {
					t.Errorf("%s: header %s carries the token", format, name)
				}
			}
		}
		if !signer.Verify(a.Token, req.Body, req.Header.Get(HeaderSignature)) {
			t.Errorf("%s: X-Webhook-Signature does not verify", format)
		}
		if !signer.VerifyStandard(a.Token, "d1", at.Unix(), req.Body, req.Header.Get(HeaderStandardSignature)) {
			t.Errorf("%s: webhook-signature does not verify", format)
		}
	}
	if _, err := (Attempt{Format: "yaml"}).Request(); err == nil {
		t.Error("an unknown format renders")
	}
}
