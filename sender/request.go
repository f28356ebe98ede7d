package sender

import (
	"net/http"
	"strconv"
	"time"

	"github.com/webhookd/webhookd/formatter"
	"github.com/webhookd/webhookd/signer"
)

// Attempt is what one attempt's request is made of.
type Attempt struct {
	// URL, Format and Token are the webhook's.
	URL, Format, Token string
	// DeliveryID is the delivery's id, Number the attempt's, from 1.
	DeliveryID string
	Number     int
	// At is when the attempt starts; its Unix second is the Standard Webhooks timestamp.
	At time.Time
	// UserAgent is the User-Agent header, webhookd/<version>.
	UserAgent string
	// Event is the body's content.
	Event formatter.Event
	// Sequence is an ordered delivery's place among its object's; 0 for any other.
	Sequence int
}

// Request renders the attempt's body in the webhook's format, signs it both ways and returns
// the request with every header of contract §3. It is a pure function of a: the delivery API
// renders an attempt again from the log with it, byte for byte as it was sent.
func (a Attempt) Request() (Request, error) {
	format, err := formatter.ParseFormat(a.Format)
	if err != nil {
		return Request{}, err
	}
	body, err := formatter.Render(format, a.Event)
	if err != nil {
		return Request{}, err
	}
	h := make(http.Header, len(RequestHeaders))
	h.Set(HeaderContentType, format.ContentType())
	h.Set(HeaderUserAgent, a.UserAgent)
	h.Set(HeaderEvent, a.Event.Name)
	h.Set(HeaderDelivery, a.DeliveryID)
	h.Set(HeaderAttempt, strconv.Itoa(a.Number))
	h.Set(HeaderSignature, signer.Signature(a.Token, body))
	ts := a.At.Unix()
	h.Set(HeaderStandardID, a.DeliveryID)
	h.Set(HeaderStandardTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderStandardSignature, signer.StandardSignature(a.Token, a.DeliveryID, ts, body))
	if a.Sequence > 0 {
		h.Set(HeaderSequence, strconv.Itoa(a.Sequence))
	}
	return Request{URL: a.URL, Header: h, Body: body}, nil
}
