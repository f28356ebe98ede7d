package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/webhookd/webhookd/repository"
)

// eventView is a stored event without its data, which is spliced in as received.
type eventView struct {
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	ProjectID *int64          `json:"project_id"`
	ObjectID  json.RawMessage `json:"object_id"`
	// OccurredAt is the event's own time, in UTC.
	OccurredAt string    `json:"occurred_at"`
	ReceivedAt time.Time `json:"received_at"`
}

func viewEvent(e repository.Event) eventView {
	v := eventView{ID: e.ID, Event: e.Name, ProjectID: nullInt(e.ProjectID), ObjectID: json.RawMessage("null"),
		OccurredAt: e.OccurredAt, ReceivedAt: e.ReceivedAt.UTC()}
	if e.ObjectID.Valid {
		v.ObjectID = json.RawMessage(e.ObjectID.String)
	}
	// Stored as received; an offset other than Z is turned to UTC, as every time answered is.
	if t, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err == nil {
		v.OccurredAt = t.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// eventJSON is the event as one JSON object whose data is the stored bytes, unchanged.
func eventJSON(e repository.Event, more ...rawField) ([]byte, error) {
	data := e.Data
	if len(data) == 0 {
		data = []byte("null")
	}
	return spliced(viewEvent(e), append([]rawField{{"data", data}}, more...)...)
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, account uint64) error {
	p := queryParams(r.URL, "event", "object_id", "since", "until", "limit", "cursor")
	q := repository.EventQuery{
		Event: p.event(), ObjectID: p.text("object_id", 1024),
		Since: p.time("since"), Until: p.time("until"), Limit: p.limit(), After: p.cursor(),
	}
	if p.err != nil {
		return p.err
	}
	limit := q.Limit
	q.Limit++
	es, err := s.store.AccountEvents(r.Context(), account, q)
	if err != nil {
		return err
	}
	// The page is written by hand around each event's own bytes.
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for i, e := range es[:min(len(es), limit)] {
		if i > 0 {
			b.WriteByte(',')
		}
		item, err := eventJSON(e)
		if err != nil {
			return err
		}
		b.Write(item)
	}
	b.WriteString(`],"next_cursor":`)
	var next *string
	if len(es) > limit {
		c := encodeCursor(repository.Key{At: es[limit-1].ReceivedAt, ID: es[limit-1].ID})
		next = &c
	}
	cursor, _ := json.Marshal(next)
	b.Write(cursor)
	b.WriteByte('}')
	writeRaw(w, http.StatusOK, b.Bytes())
	return nil
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, account uint64) error {
	id, err := pathEventID(r.PathValue("id"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	e, err := s.store.AccountEvent(ctx, account, id)
	if err != nil {
		return err
	}
	ds, err := s.store.AccountEventDeliveries(ctx, account, e.ID)
	if err != nil {
		return err
	}
	views := make([]deliveryView, len(ds))
	for i, d := range ds {
		views[i] = viewDelivery(d)
	}
	deliveries, err := json.Marshal(views)
	if err != nil {
		return err
	}
	b, err := eventJSON(e, rawField{"deliveries", deliveries})
	if err != nil {
		return err
	}
	writeRaw(w, http.StatusOK, b)
	return nil
}
