package sender

// Header names of the contract (§3): the request headers every attempt carries, and the answer
// header the sender reads. The worker sets them and `webhookd receive` checks them from here.
const (
	HeaderContentType = "Content-Type"
	HeaderUserAgent   = "User-Agent"
	// HeaderEvent is the event name, OBJECT.ACTION.
	HeaderEvent = "X-Webhook-Event"
	// HeaderDelivery is the delivery id, the same on every attempt of a delivery.
	HeaderDelivery = "X-Webhook-Delivery"
	// HeaderAttempt is the attempt's number, from 1.
	HeaderAttempt = "X-Webhook-Attempt"
	// HeaderSignature is sha256=<hex HMAC-SHA256 of the body with the webhook's token>.
	HeaderSignature = "X-Webhook-Signature"
	// HeaderStandardID, HeaderStandardTimestamp and HeaderStandardSignature are the Standard
	// Webhooks headers.
	HeaderStandardID        = "Webhook-Id"
	HeaderStandardTimestamp = "Webhook-Timestamp"
	HeaderStandardSignature = "Webhook-Signature"
	// HeaderSequence is an ordered webhook's place of the delivery among its object's: 1, 2, 3…
	// (contract §9). Other webhooks' attempts do not carry it.
	HeaderSequence = "X-Webhook-Sequence"
	// HeaderRetryAfter is the answer's request to wait before the next attempt.
	HeaderRetryAfter = "Retry-After"
)

// RequestHeaders lists the headers every attempt carries, in the order `webhookd receive`
// prints them.
var RequestHeaders = []string{
	HeaderContentType, HeaderUserAgent, HeaderEvent, HeaderDelivery, HeaderAttempt, HeaderSignature,
	HeaderStandardID, HeaderStandardTimestamp, HeaderStandardSignature,
}
