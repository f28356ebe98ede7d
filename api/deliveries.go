package api

import (
	"net/http"
	"time"

	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

// deliveryView is a delivery as lists answer it.
type deliveryView struct {
	ID             string    `json:"id"`
	EventID        string    `json:"event_id"`
	Event          string    `json:"event"`
	WebhookID      uint64    `json:"webhook_id"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	LastStatusCode *int64    `json:"last_status_code"`
	LastError      *string   `json:"last_error"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func viewDelivery(d repository.AccountDelivery) deliveryView {
	return deliveryView{
		ID: d.ID, EventID: d.EventID, Event: d.Event, WebhookID: d.WebhookID, Status: d.Status, Attempts: d.Attempts,
		LastStatusCode: nullInt(d.LastStatusCode), LastError: nullString(d.LastError),
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
	}
}

// attemptView is one logged attempt and what the endpoint answered.
type attemptView struct {
	Attempt      int       `json:"attempt"`
	StartedAt    time.Time `json:"started_at"`
	DurationMS   float64   `json:"duration_ms"`
	StatusCode   *int64    `json:"status_code"`
	Error        *string   `json:"error"`
	ResponseBody *string   `json:"response_body"`
}

func viewAttempt(a repository.Attempt) attemptView {
	v := attemptView{
		Attempt: a.Attempt, StartedAt: a.StartedAt.UTC(), DurationMS: float64(a.DurationUS) / 1000,
		StatusCode: nullInt(a.StatusCode), Error: nullString(a.Error),
	}
	if a.ResponseBody != nil {
		body := string(a.ResponseBody)
		v.ResponseBody = &body
	}
	return v
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, account uint64) error {
	p := queryParams(r.URL, "webhook_id", "status", "event", "event_id", "object_id", "since", "until", "limit", "cursor")
	q := repository.DeliveryQuery{
		WebhookID: p.id("webhook_id"), Status: p.status(), Event: p.event(),
		EventID: p.text("event_id", 64), ObjectID: p.text("object_id", 1024),
		Since: p.time("since"), Until: p.time("until"), Limit: p.limit(), After: p.cursor(),
	}
	if p.err != nil {
		return p.err
	}
	limit := q.Limit
	q.Limit++
	ds, err := s.store.AccountDeliveries(r.Context(), account, q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pageOf(ds, limit, repository.AccountDelivery.Key, viewDelivery))
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, account uint64) error {
	id, err := pathDeliveryID(r.PathValue("id"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.store.AccountDelivery(ctx, account, id)
	if err != nil {
		return err
	}
	as, err := s.store.Attempts(ctx, d.ID)
	if err != nil {
		return err
	}
	req, err := s.renderRequest(ctx, account, d, as)
	if err != nil {
		return err
	}
	// Here "attempts" is the list of attempts, as contract §10 has it; its count is the
	// number of the last one.
	out := struct {
		deliveryView
		Attempts []attemptView `json:"attempts"`
		Request  *requestView  `json:"request"`
	}{deliveryView: viewDelivery(d), Attempts: make([]attemptView, len(as)), Request: req}
	for i, a := range as {
		out.Attempts[i] = viewAttempt(a)
	}
	return writeJSON(w, http.StatusOK, out)
}

// retryDelivery redelivers one delivery (contract §6): its next attempt now, whatever its
// status. A disabled webhook gets no attempt, so the retry is refused rather than queued to
// be dropped.
func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, account uint64) error {
	id, err := pathDeliveryID(r.PathValue("id"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.store.AccountDelivery(ctx, account, id)
	if err != nil {
		return err
	}
	hook, err := s.store.AccountWebhook(ctx, account, d.WebhookID)
	if err != nil {
		return err
	}
	if !hook.Enabled {
		return &httpError{http.StatusConflict, "webhook is disabled: enable it first"}
	}
	n, err := redeliver.Publish(ctx, s.pub, s.opts.Queue, []string{d.ID})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, map[string]int{"queued": n})
}

// retryDeliveries redelivers every delivery matching the body, of enabled webhooks, oldest
// first and a batch at a time; dry_run only counts them.
func (s *Server) retryDeliveries(w http.ResponseWriter, r *http.Request, account uint64) error {
	var body struct {
		WebhookID *uint64 `json:"webhook_id"`
		Status    string  `json:"status"`
		Since     string  `json:"since"`
		Until     string  `json:"until"`
		DryRun    bool    `json:"dry_run"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	var q repository.RetryQuery
	var err error
	if body.WebhookID != nil {
		if *body.WebhookID == 0 {
			return badRequest("webhook_id", "want a positive integer")
		}
		q.WebhookID = *body.WebhookID
	}
	if err := checkStatus("status", body.Status); err != nil {
		return err
	}
	q.Status = body.Status
	if q.Since, err = parseTime("since", body.Since); err != nil {
		return err
	}
	if q.Until, err = parseTime("until", body.Until); err != nil {
		return err
	}
	if q.WebhookID == 0 && q.Status == "" && q.Since.IsZero() && q.Until.IsZero() {
		return badRequest("body", "give at least one of webhook_id, status, since and until")
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	count := 0
	var after *repository.Key
	for {
		keys, err := s.store.RetryBatch(ctx, account, q, after, s.retryBatch)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		after = &keys[len(keys)-1]
		if body.DryRun {
			count += len(keys)
			continue
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		n, err := redeliver.Publish(ctx, s.pub, s.opts.Queue, ids)
		count += n
		if err != nil {
			s.opts.Log.Warn("bulk retry cut short", "account", account, "queued", count, "err", err)
			return err
		}
		// Progress earns the answer more time: a large retry outlasts one write timeout.
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	status := http.StatusAccepted
	if body.DryRun {
		status = http.StatusOK
	}
	return writeJSON(w, status, map[string]any{"count": count, "dry_run": body.DryRun})
}
