// Package formatter renders the body of a webhook delivery as JSON, XML or form data.
//
// Rendering is a pure function of the event: the same event renders to the same bytes on
// every attempt, which is what lets a receiver trust a signature computed over them.
package formatter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Format is a payload format a webhook can choose.
type Format string

// The formats of contract §3.
const (
	JSON Format = "json"
	XML  Format = "xml"
	Form Format = "form"
)

// Event is the body of a delivery, field for field. Raw JSON fields hold the bytes exactly as
// the event carried them, so numbers are never rounded.
type Event struct {
	// Name is the event name, OBJECT.ACTION.
	Name string
	// ID is the event id.
	ID string
	// AccountID is the tenant.
	AccountID uint64
	// ProjectID is nil for account-wide events; it is then left out of the body.
	ProjectID *uint64
	// ObjectID is a JSON number or string, or nil when absent; it is then left out of the body.
	ObjectID json.RawMessage
	// OccurredAt is an RFC 3339 time, as received or as stamped by the worker.
	OccurredAt string
	// Data is any JSON value; nil renders as null.
	Data json.RawMessage
}

// ParseFormat returns the Format named s, or an error for an unknown name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case JSON, XML, Form:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q", s)
}

// ContentType is the Content-Type header of a body in format f.
func (f Format) ContentType() string {
	switch f {
	case XML:
		return "application/xml"
	case Form:
		return "application/x-www-form-urlencoded"
	}
	return "application/json"
}

// Render returns the body of e in format f.
func Render(f Format, e Event) ([]byte, error) {
	switch f {
	case JSON:
		return renderJSON(e)
	case XML:
		return renderXML(e)
	case Form:
		return renderForm(e)
	}
	return nil, fmt.Errorf("render: unknown format %q", f)
}

func (e Event) data() json.RawMessage {
	if len(e.Data) == 0 {
		return json.RawMessage("null")
	}
	return e.Data
}

// objectID returns the text of e.ObjectID (a string decoded, a number as written) and whether it
// is present. A JSON null counts as absent, as if the field were left out, so that the three
// formats agree; anything but a number or a string is an error in every format.
func (e Event) objectID() (text string, ok bool, err error) {
	raw := bytes.Trim(e.ObjectID, " \t\r\n") // JSON's whitespace, not Unicode's
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	if c := raw[0]; !json.Valid(raw) || c != '"' && c != '-' && (c < '0' || c > '9') {
		return "", false, errors.New("objectId is neither a number nor a string")
	}
	r := jsonReader{s: string(raw)}
	return r.scalar(), true, nil
}
