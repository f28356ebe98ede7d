package api

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/webhookd/webhookd/repository"
)

// Page sizes of lists (contract §10).
const (
	defaultLimit = 50
	maxLimit     = 100
)

// eventName is OBJECT.ACTION, as contract §1 spells event names.
var eventName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*\.[A-Z][A-Z0-9_]*$`)

// deliveryID is the form of a delivery id (contract §3).
var deliveryID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// params reads a request's query parameters. The first bad one is kept, so that a handler
// reads every parameter and then answers the first error, named.
type params struct {
	v   url.Values
	err error
}

// queryParams takes the query of u, refusing parameters not in allowed and any given twice:
// a misspelt filter would otherwise widen a list without a word.
func queryParams(u *url.URL, allowed ...string) *params {
	p := &params{}
	v, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		p.err = badRequest("query", "%v", err)
		return p
	}
	p.v = v
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			p.fail(badRequest(name, "unknown parameter; this list takes %s", strings.Join(allowed, ", ")))
		case len(v[name]) > 1:
			p.fail(badRequest(name, "given more than once"))
		}
	}
	return p
}

func (p *params) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *params) str(name string) string { return p.v.Get(name) }

// limit is the page size, 1 to 100, 50 when absent.
func (p *params) limit() int {
	s := p.v.Get("limit")
	if s == "" {
		return defaultLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		p.fail(badRequest("limit", "want an integer from 1 to %d, got %q", maxLimit, s))
		return defaultLimit
	}
	return n
}

// time is an RFC 3339 time, zero when absent.
func (p *params) time(name string) time.Time {
	t, err := parseTime(name, p.v.Get(name))
	p.fail(err)
	return t
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest(name, "want an RFC 3339 time such as 2026-12-01T00:00:00Z, got %q", s)
	}
	return t, nil
}

// id is a positive integer id, 0 when absent.
func (p *params) id(name string) uint64 {
	s := p.v.Get(name)
	if s == "" {
		return 0
	}
	n, err := parseID(name, s)
	p.fail(err)
	return n
}

func parseID(name, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, badRequest(name, "want a positive integer, got %q", s)
	}
	return n, nil
}

// status is pending, succeeded or failed, "" when absent.
func (p *params) status() string {
	s := p.v.Get("status")
	p.fail(checkStatus("status", s))
	return s
}

func checkStatus(name, s string) error {
	switch s {
	case "", repository.StatusPending, repository.StatusSucceeded, repository.StatusFailed:
		return nil
	}
	return badRequest(name, "want pending, succeeded or failed, got %q", s)
}

// event is an OBJECT.ACTION event name, "" when absent.
func (p *params) event() string {
	s := p.v.Get("event")
	if s != "" && (len(s) > 64 || !eventName.MatchString(s)) {
		p.fail(badRequest("event", "want an OBJECT.ACTION event name such as TASK.CREATED, got %q", s))
	}
	return s
}

// text is a string of 1 to max characters, "" when absent.
func (p *params) text(name string, max int) string {
	s := p.v.Get(name)
	if n := utf8.RuneCountInString(s); n > max || !utf8.ValidString(s) {
		p.fail(badRequest(name, "want at most %d characters", max))
	}
	return s
}

// cursor is the position a page starts after, nil when absent.
func (p *params) cursor() *repository.Key {
	s := p.v.Get("cursor")
	if s == "" {
		return nil
	}
	k, ok := decodeCursor(s)
	if !ok {
		p.fail(badRequest("cursor", "not a cursor this API gave"))
		return nil
	}
	return &k
}

// A cursor is opaque to clients: the base64 of the last row's time in Unix microseconds
// and its id, which is where the next page starts.
func encodeCursor(k repository.Key) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.At.UnixMicro(), 10) + "." + k.ID))
}

func decodeCursor(s string) (repository.Key, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return repository.Key{}, false
	}
	at, id, ok := strings.Cut(string(raw), ".")
	us, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" || len(id) > 256 || !utf8.ValidString(id) {
		return repository.Key{}, false
	}
	return repository.Key{At: time.UnixMicro(us).UTC(), ID: id}, true
}

// pathWebhookID is the {id} of a webhook's path.
func pathWebhookID(v string) (uint64, error) { return parseID("id", v) }

// pathDeliveryID is the {id} of a delivery's path.
func pathDeliveryID(v string) (string, error) {
	if !deliveryID.MatchString(v) {
		return "", badRequest("id", "want a delivery id: 1 to 64 letters, digits, _ or -")
	}
	return v, nil
}

// pathEventID is the {id} of an event's path: 1 to 64 characters.
func pathEventID(v string) (string, error) {
	if n := utf8.RuneCountInString(v); n < 1 || n > 64 || !utf8.ValidString(v) {
		return "", badRequest("id", "want an event id of 1 to 64 characters")
	}
	return v, nil
}
