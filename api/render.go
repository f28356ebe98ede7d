package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/sender"
)

// requestView is what an attempt of a delivery sends: rendered again from the stored event
// by sender.Attempt, the worker's own rendering, so it is byte for byte what the endpoint got.
type requestView struct {
	// Attempt and At are the attempt rendered: the delivery's last, or the first as it
	// would go now when none was made.
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Method  string    `json:"method"`
	URL     string    `json:"url"`
	Headers headers   `json:"headers"`
	Body    string    `json:"body"`
}

// headers encode as one object, the contract's headers first in its order (§3), then any
// other the attempt carries, sorted.
type headers http.Header

func (h headers) MarshalJSON() ([]byte, error) {
	names := make([]string, 0, len(h))
	for _, name := range sender.RequestHeaders {
		if _, ok := h[name]; ok {
			names = append(names, name)
		}
	}
	var extra []string
	for name := range h {
		if !slices.Contains(sender.RequestHeaders, name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range append(names, extra...) {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		v, _ := json.Marshal(http.Header(h).Get(name))
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// renderRequest renders delivery d's last attempt with its number and start (the Standard
// Webhooks timestamp), and the webhook as it is now. It is nil when the webhook was deleted
// or the event purged: there is nothing left to render it from.
func (s *Server) renderRequest(ctx context.Context, account uint64, d repository.AccountDelivery, as []repository.Attempt) (*requestView, error) {
	hook, err := s.store.SigningWebhook(ctx, account, d.WebhookID)
	if errors.Is(err, repository.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ev, err := s.store.AccountEvent(ctx, account, d.EventID)
	if errors.Is(err, repository.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	number, at := max(d.Attempts, 1), s.opts.Now()
	if n := len(as); n > 0 && as[n-1].Attempt == d.Attempts {
		at = as[n-1].StartedAt
	}
	place, _, err := s.store.PlaceOf(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	req, err := sender.Attempt{
		URL: hook.URL, Format: hook.Format, Token: hook.Token,
		DeliveryID: d.ID, Number: number, At: at, UserAgent: s.opts.UserAgent, Event: ev.Payload(),
		Sequence: place.Sequence,
	}.Request()
	if err != nil {
		return nil, err
	}
	return &requestView{
		Attempt: number, At: at.UTC(), Method: http.MethodPost, URL: req.URL, Headers: headers(req.Header), Body: string(req.Body),
	}, nil
}
