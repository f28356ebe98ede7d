package api

import (
	"database/sql"
	"net/http"
	"time"

	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

// statsWindow is the span of a webhook's delivery counts.
const statsWindow = 24 * time.Hour

// webhookView is a webhook as the API answers it: never its token.
type webhookView struct {
	ID                  uint64  `json:"id"`
	Event               string  `json:"event"`
	ProjectID           *int64  `json:"project_id"`
	URL                 string  `json:"url"`
	Format              string  `json:"format"`
	Enabled             bool    `json:"enabled"`
	DisabledReason      *string `json:"disabled_reason"`
	ConsecutiveFailures int     `json:"consecutive_failures"`
	RateLimit           *int64  `json:"rate_limit"`
	Ordered             bool    `json:"ordered"`
	// Circuit is "open" while the webhook has a row in breakers, else "closed".
	Circuit   string    `json:"circuit"`
	CreatedAt time.Time `json:"created_at"`
}

func viewWebhook(w repository.AccountWebhook) webhookView {
	v := webhookView{
		ID: w.ID, Event: w.Event, ProjectID: nullInt(w.ProjectID), URL: w.URL, Format: w.Format,
		Enabled: w.Enabled, ConsecutiveFailures: w.ConsecutiveFailures, RateLimit: nullInt(w.RateLimit),
		Ordered: w.Ordered, Circuit: "closed", CreatedAt: w.CreatedAt.UTC(),
	}
	// A reason kept for a pending announcement says nothing of a webhook enabled since.
	if !w.Enabled {
		v.DisabledReason = nullString(w.DisabledReason)
	}
	if w.CircuitOpen {
		v.Circuit = "open"
	}
	return v
}

type statsView struct {
	Since       time.Time    `json:"since"`
	Pending     int          `json:"pending"`
	Succeeded   int          `json:"succeeded"`
	Failed      int          `json:"failed"`
	LastFailure *failureView `json:"last_failure"`
}

// failureView is a webhook's newest failed delivery, at any time.
type failureView struct {
	DeliveryID string    `json:"delivery_id"`
	At         time.Time `json:"at"`
	StatusCode *int64    `json:"status_code"`
	Error      *string   `json:"error"`
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, account uint64) error {
	p := queryParams(r.URL, "limit", "cursor")
	limit, after := p.limit(), p.cursor()
	if p.err != nil {
		return p.err
	}
	hooks, err := s.store.AccountWebhooks(r.Context(), account, after, limit+1)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pageOf(hooks, limit, repository.AccountWebhook.Key, viewWebhook))
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, account uint64) error {
	id, err := pathWebhookID(r.PathValue("id"))
	if err != nil {
		return err
	}
	hook, err := s.store.AccountWebhook(r.Context(), account, id)
	if err != nil {
		return err
	}
	since := s.opts.Now().Add(-statsWindow).UTC()
	st, err := s.store.WebhookStats(r.Context(), hook.ID, since)
	if err != nil {
		return err
	}
	out := struct {
		webhookView
		Stats statsView `json:"stats"`
	}{viewWebhook(hook), statsView{Since: since, Pending: st.Pending, Succeeded: st.Succeeded, Failed: st.Failed}}
	if f := st.LastFailure; f != nil {
		out.Stats.LastFailure = &failureView{DeliveryID: f.ID, At: f.UpdatedAt.UTC(), StatusCode: nullInt(f.LastStatusCode), Error: nullString(f.LastError)}
	}
	return writeJSON(w, http.StatusOK, out)
}

// enableWebhook turns a webhook on again with its failures reset and, given replay_since,
// replays to it what it missed since then, as `webhookd replay` does.
func (s *Server) enableWebhook(w http.ResponseWriter, r *http.Request, account uint64) error {
	id, err := pathWebhookID(r.PathValue("id"))
	if err != nil {
		return err
	}
	var body struct {
		ReplaySince *string `json:"replay_since"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	var since time.Time
	if body.ReplaySince != nil {
		if since, err = parseTime("replay_since", *body.ReplaySince); err != nil {
			return err
		}
		if since.IsZero() {
			return badRequest("replay_since", "want an RFC 3339 time")
		}
	}
	ctx := r.Context()
	if err := s.store.EnableWebhook(ctx, account, id); err != nil {
		return err
	}
	replayed := 0
	if !since.IsZero() {
		hook, err := s.store.SigningWebhook(ctx, account, id)
		if err != nil {
			return err
		}
		if replayed, err = redeliver.Replay(ctx, s.store, s.pub, s.opts.Queue, hook, since, s.opts.Now()); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, map[string]int{"replayed": replayed})
}

func nullInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

func nullString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}
