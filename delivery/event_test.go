package delivery

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/webhookd/webhookd/consumer"
)

func TestParseEvent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name, key, body string
		wantErr         string // empty: valid
		check           func(t *testing.T, ev eventView)
	}{
		{name: "minimal", key: "TASK.CREATED", body: `{"id":"e","event":"TASK.CREATED","accountId":7}`,
			check: func(t *testing.T, ev eventView) {
				if ev.account != 7 || ev.project.Valid || ev.object.Valid || string(ev.data) != "null" {
					t.Errorf("got %+v", ev)
				}
				if ev.occurred != "2026-01-02T03:04:05.000000006Z" {
					t.Errorf("occurredAt default = %q", ev.occurred)
				}
			}},
		{name: "full", key: "TIME_LOG.UPDATED", body: `{"id":"e","event":"TIME_LOG.UPDATED","accountId":7,"projectId":9,"objectId":"x-1","occurredAt":"2025-12-31T23:59:59+01:00","data":{"n":123456789012345678901}}`,
			check: func(t *testing.T, ev eventView) {
				if ev.project.Int64 != 9 || ev.object.String != `"x-1"` || ev.occurred != "2025-12-31T23:59:59+01:00" || string(ev.data) != `{"n":123456789012345678901}` {
					t.Errorf("got %+v", ev)
				}
			}},
		{name: "null project and object", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1,"projectId":null,"objectId":null,"occurredAt":null}`},
		{name: "integer object", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1,"objectId":-42}`},
		{name: "64-char id", key: "A.B", body: `{"id":"` + strings.Repeat("é", 64) + `","event":"A.B","accountId":1}`},
		{name: "array body", key: "A.B", body: `[1]`, wantErr: "not a JSON object"},
		{name: "empty id", key: "A.B", body: `{"id":"","event":"A.B","accountId":1}`, wantErr: "field id"},
		{name: "numeric id", key: "A.B", body: `{"id":5,"event":"A.B","accountId":1}`, wantErr: "field id"},
		{name: "three words", key: "A.B.C", body: `{"id":"e","event":"A.B.C","accountId":1}`, wantErr: "field event"},
		{name: "lower case", key: "a.B", body: `{"id":"e","event":"a.B","accountId":1}`, wantErr: "field event"},
		{name: "leading digit", key: "1A.B", body: `{"id":"e","event":"1A.B","accountId":1}`, wantErr: "field event"},
		{name: "key mismatch", key: "A.C", body: `{"id":"e","event":"A.B","accountId":1}`, wantErr: "routing key"},
		{name: "fraction account", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1.5}`, wantErr: "field accountId"},
		{name: "exponent account", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1e3}`, wantErr: "field accountId"},
		{name: "huge account", key: "A.B", body: `{"id":"e","event":"A.B","accountId":99999999999999999999}`, wantErr: "field accountId"},
		{name: "missing account", key: "A.B", body: `{"id":"e","event":"A.B"}`, wantErr: "field accountId: missing"},
		{name: "float object", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1,"objectId":1.5}`, wantErr: "field objectId"},
		{name: "bad time", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1,"occurredAt":"2025-13-01T00:00:00Z"}`, wantErr: "field occurredAt"},
		{name: "too big", key: "A.B", body: `{"id":"e","event":"A.B","accountId":1,"data":"` + strings.Repeat("x", 200) + `"}`, wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := parseEvent([]byte(tt.body), tt.key, 200, now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseEvent: %v", err)
				}
				if tt.check != nil {
					tt.check(t, eventView{ev.AccountID, ev.ProjectID, ev.ObjectID, ev.OccurredAt, ev.Data})
				}
				return
			}
			if !consumer.IsRejected(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseEvent error = %v, want a rejection mentioning %q", err, tt.wantErr)
			}
		})
	}
}

type eventView struct {
	account  uint64
	project  sql.NullInt64
	object   sql.NullString
	occurred string
	data     []byte
}

// FuzzParseEvent checks that no body crashes the parser and that whatever it accepts is an
// event the rest of the pipeline can store and render.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"id":"e","event":"A.B","accountId":1,"data":{"x":[1,null,"s"]}}`), "A.B")
	f.Add([]byte(`{"id":"e","event":"A.B","accountId":1,"projectId":2,"objectId":"o","occurredAt":"2025-01-01T00:00:00Z"}`), "A.B")
	f.Add([]byte("{\"id\":\"\xff\"}"), "A.B")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		ev, err := parseEvent(body, key, 1<<20, time.Unix(0, 0))
		if err != nil {
			if !consumer.IsRejected(err) {
				t.Fatalf("error is not a rejection: %v", err)
			}
			return
		}
		if ev.Name != key || ev.ID == "" || ev.AccountID == 0 || ev.OccurredAt == "" || len(ev.Data) == 0 {
			t.Fatalf("accepted an incomplete event: %+v", ev)
		}
	})
}
