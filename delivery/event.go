package delivery

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/webhookd/webhookd/consumer"
	"github.com/webhookd/webhookd/repository"
)

// eventName is OBJECT.ACTION: two upper-case words joined by one dot.
var eventName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*\.[A-Z][A-Z0-9_]*$`)

// parseEvent validates an event message (contract §1) and returns the event to record.
// receivedAt stamps events that carry no occurredAt.
func parseEvent(body []byte, routingKey string, maxBytes int, receivedAt time.Time) (repository.Event, error) {
	var ev repository.Event
	if len(body) > maxBytes {
		return ev, consumer.Rejectf("event too large: %d bytes, limit %d", len(body), maxBytes)
	}
	if !utf8.Valid(body) {
		return ev, consumer.Rejectf("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return ev, consumer.Rejectf("body is not a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return ev, consumer.Rejectf("body is not valid JSON: %v", err)
	}

	var err error
	if ev.ID, err = stringField(fields, "id", true); err != nil {
		return ev, err
	}
	if n := utf8.RuneCountInString(ev.ID); n < 1 || n > 64 {
		return ev, consumer.Rejectf("field id: want 1 to 64 characters, got %d", n)
	}
	if ev.Name, err = stringField(fields, "event", true); err != nil {
		return ev, err
	}
	if len(ev.Name) > 64 || !eventName.MatchString(ev.Name) {
		return ev, consumer.Rejectf("field event: %q is not an OBJECT.ACTION event name", ev.Name)
	}
	if ev.Name != routingKey {
		return ev, consumer.Rejectf("field event: %q does not match routing key %q", ev.Name, routingKey)
	}
	account, err := positiveInt(fields, "accountId", true)
	if err != nil {
		return ev, err
	}
	ev.AccountID = uint64(account.Int64)
	if ev.ProjectID, err = positiveInt(fields, "projectId", false); err != nil {
		return ev, err
	}
	if raw, ok := present(fields, "objectId"); ok {
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return ev, consumer.Rejectf("field objectId: %v", err)
			}
		default:
			if _, ok := integer(raw); !ok {
				return ev, consumer.Rejectf("field objectId: want an integer or a string, got %s", clip(raw))
			}
		}
		if len(raw) > 1024 {
			return ev, consumer.Rejectf("field objectId: longer than 1024 bytes")
		}
		ev.ObjectID = sql.NullString{String: string(raw), Valid: true}
	}
	occurred, err := stringField(fields, "occurredAt", false)
	if err != nil {
		return ev, err
	}
	if occurred == "" {
		occurred = receivedAt.UTC().Format(time.RFC3339Nano)
	} else if _, err := time.Parse(time.RFC3339Nano, occurred); err != nil || len(occurred) > 64 {
		return ev, consumer.Rejectf("field occurredAt: %q is not an RFC 3339 time", occurred)
	}
	ev.OccurredAt = occurred
	ev.Data = []byte("null")
	if raw, ok := fields["data"]; ok {
		ev.Data = raw
	}
	ev.ReceivedAt = receivedAt.UTC()
	return ev, nil
}

// present returns a field that is there and not null.
func present(fields map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

func stringField(fields map[string]json.RawMessage, name string, required bool) (string, error) {
	raw, ok := present(fields, name)
	if !ok {
		if required {
			return "", consumer.Rejectf("field %s: missing", name)
		}
		return "", nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", consumer.Rejectf("field %s: want a string, got %s", name, clip(raw))
	}
	if required && s == "" {
		return "", consumer.Rejectf("field %s: empty", name)
	}
	return s, nil
}

func positiveInt(fields map[string]json.RawMessage, name string, required bool) (sql.NullInt64, error) {
	raw, ok := present(fields, name)
	if !ok {
		if required {
			return sql.NullInt64{}, consumer.Rejectf("field %s: missing", name)
		}
		return sql.NullInt64{}, nil
	}
	n, ok := integer(raw)
	if !ok || n <= 0 {
		return sql.NullInt64{}, consumer.Rejectf("field %s: want a positive integer, got %s", name, clip(raw))
	}
	return sql.NullInt64{Int64: n, Valid: true}, nil
}

// integer parses a JSON integer literal (no fraction, no exponent) that fits in an int64.
func integer(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n == math.MinInt64 || (len(raw) > 1 && raw[0] == '0') {
		return 0, false
	}
	return n, true
}

func clip(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}
