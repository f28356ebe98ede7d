package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

// httpError is an answer other than success: its status and the message of {"error": …}.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// badRequest is a 400 whose message starts with the parameter at fault.
func badRequest(param, format string, args ...any) error {
	return &httpError{http.StatusBadRequest, param + ": " + fmt.Sprintf(format, args...)}
}

func unauthorized(msg string) error { return &httpError{http.StatusUnauthorized, msg} }

// errNotFound answers an unknown id and another account's id alike.
var errNotFound = &httpError{http.StatusNotFound, "not found"}

// errBroker answers a redelivery the broker did not confirm.
var errBroker = &httpError{http.StatusServiceUnavailable, "could not queue the redelivery: the broker did not confirm it; try again"}

// fail answers err: its own status for an httpError, 404 for a row not found, else 500 with
// the details in the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, repository.ErrNotFound):
		he = errNotFound
	case errors.Is(err, redeliver.ErrNotConfirmed):
		s.opts.Log.Warn("redelivery not confirmed", "method", r.Method, "path", r.URL.Path, "err", err)
		he = errBroker
	default:
		s.opts.Log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		he = &httpError{http.StatusInternalServerError, "internal error"}
	}
	if he.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="webhookd", error="invalid_token"`)
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	writeRaw(w, status, b)
	return nil
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte{'\n'})
}

// rawField is a member to splice into a JSON object as it is, unlike json.Marshal, which
// compacts raw messages: an event's data is answered byte for byte as it was received.
type rawField struct {
	name string
	raw  []byte
}

// spliced is the JSON object v with fields appended; v must encode as an object.
func spliced(v any, fields ...rawField) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode answer: %w", err)
	}
	if len(b) < 2 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("encode answer: %T is not an object", v)
	}
	out := bytes.NewBuffer(b[:len(b)-1])
	for i, f := range fields {
		if i > 0 || len(b) > 2 {
			out.WriteByte(',')
		}
		name, _ := json.Marshal(f.name)
		out.Write(name)
		out.WriteByte(':')
		out.Write(f.raw)
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// page is a list's answer: {"data": [...], "next_cursor": "…" | null}.
type page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// pageOf cuts rows fetched with one more than limit to a page, with the cursor of its last
// row when there are more.
func pageOf[R any, T any](rows []R, limit int, key func(R) repository.Key, view func(R) T) page[T] {
	p := page[T]{Data: make([]T, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			c := encodeCursor(key(rows[i-1]))
			p.NextCursor = &c
			break
		}
		p.Data = append(p.Data, view(r))
	}
	return p
}

// decodeBody reads a JSON object into v, refusing unknown fields, trailing data and bodies
// over the limit. An empty body leaves v as it is.
func decodeBody(r *http.Request, v any) error {
	body, err := readAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return badRequest(te.Field, "want a %s", te.Type)
		}
		return badRequest("body", "%v", err)
	}
	if dec.More() {
		return badRequest("body", "want one JSON object")
	}
	return nil
}

func readAll(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest("body", "larger than %d bytes", mbe.Limit)
		}
		return nil, badRequest("body", "%v", err)
	}
	return buf.Bytes(), nil
}
