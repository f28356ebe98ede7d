// Package sender makes one delivery attempt: it POSTs the signed body to the webhook's URL and
// reports what came back.
//
// The receiver is someone else's server and may be slow, broken or hostile, so everything it can
// do to the worker is bounded here: the whole attempt has one timeout, at most 64 KiB of the
// answer is read, redirects are not followed, certificates are always verified, and the address
// actually dialled is checked against the destination guard (see Allowed), so that a webhook URL
// cannot reach the worker's own network, whatever its DNS answers.
package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/webhookd/webhookd/retry"
)

const (
	defaultTimeout             = 10 * time.Second
	defaultMaxIdleConnsPerHost = 64
	defaultUserAgent           = "webhookd"

	// maxReadBytes bounds what is read of a response body. Reading a small body to its end lets
	// the connection be reused; anything longer is cut off and its connection closed.
	maxReadBytes = 64 << 10
	// maxKeptBytes is what the delivery log stores of a response body.
	maxKeptBytes = 1 << 10
)

// ErrInvalidURL marks a URL that is not an absolute http or https URL with a host. Retrying
// cannot help, so the consumer fails the delivery at once.
var ErrInvalidURL = errors.New("invalid webhook URL")

// ErrDestinationRefused marks a destination that resolves to an address the guard refuses
// (loopback, private, link-local and the like; see Allowed). Like ErrInvalidURL it is permanent.
var ErrDestinationRefused = errors.New("destination refused")

// Options configures a Sender. The zero value is usable: every field has a default.
type Options struct {
	// Timeout bounds the whole attempt, from dialling to the last byte of the body read.
	// Defaults to 10s.
	Timeout time.Duration
	// AllowPrivateNetworks lifts the destination guard, for development and tests.
	AllowPrivateNetworks bool
	// UserAgent is sent as User-Agent, replacing any the request carries. Defaults to "webhookd".
	UserAgent string
	// MaxIdleConnsPerHost is the keep-alive pool kept per host. Defaults to 64.
	MaxIdleConnsPerHost int
	// Now is the clock used to turn a Retry-After HTTP date into a delay. Defaults to time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.UserAgent == "" {
		o.UserAgent = defaultUserAgent
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = defaultMaxIdleConnsPerHost
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Request is one attempt's POST.
type Request struct {
	// URL is the webhook's URL; only absolute http and https URLs are sent.
	URL string
	// Header is sent as given, except User-Agent (see Options.UserAgent); Send does not
	// change it. It carries the signatures, so Send never puts it, or any part of it, in an
	// error.
	Header http.Header
	// Body is sent as is; its bytes are the ones that were signed.
	Body []byte
}

// Response is what came back from an attempt.
type Response struct {
	// StatusCode is the HTTP status, 0 when no response arrived. A 3xx is not followed.
	StatusCode int
	// Body is the first 1 KiB of the response body, for the delivery log.
	Body []byte
	// RetryAfter is the answer's Retry-After (delta seconds or HTTP date) as a delay from the
	// answer, 0 when absent, invalid or already past. What it means for the next attempt is
	// retry.Decide's business.
	RetryAfter time.Duration
	// Duration is how long the attempt took, dialling and reading the body included.
	Duration time.Duration
}

// Sender POSTs deliveries over one shared keep-alive pool. It is safe for concurrent use.
type Sender struct {
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	userAgent string
	now       func() time.Time
	// guard checks every address about to be dialled; nil lets every address through. It is a
	// field rather than a constant so that a test can exempt a single local listener.
	guard func(netip.AddrPort) error
}

// New returns a Sender configured by opts. Close it to release idle connections.
func New(opts Options) *Sender {
	opts = opts.withDefaults()
	s := &Sender{
		timeout:   opts.Timeout,
		userAgent: opts.UserAgent,
		now:       opts.Now,
	}
	if !opts.AllowPrivateNetworks {
		s.guard = checkDestination
	}
	// The guard runs in Control, after name resolution and before connect, on the exact address
	// being dialled. Checking the name or a separate lookup instead would let DNS rebinding
	// (one answer for the check, another for the dial) through.
	dialer := &net.Dialer{Control: s.control}
	s.transport = &http.Transport{
		// Proxy stays nil: an environment proxy would dial on our behalf and bypass the guard.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		// A custom DialContext turns HTTP/2 off unless asked for. TLSClientConfig stays nil: the
		// defaults verify certificates against the system roots, which is what the contract wants.
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        0, // no overall cap; MaxIdleConnsPerHost and IdleConnTimeout bound it
		MaxIdleConnsPerHost: opts.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// Headers are the receiver's to make large too; the default allows 10 MB of them.
		MaxResponseHeaderBytes: maxReadBytes,
		// Bodies are kept only as diagnostics: raw bytes read better in the log, and no
		// decompression means no compression bomb.
		DisableCompression: true,
	}
	s.client = &http.Client{
		Transport: s.transport,
		// A redirect is an answer like any other non-2xx; following it would let a receiver
		// point the worker somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// Send POSTs req.Body to req.URL with req.Header, within Options.Timeout or ctx, whichever ends
// first. A non-2xx status is not an error: StatusCode tells. An error means the attempt failed
// without a usable response: invalid URL, refused destination, DNS, connect or TLS error,
// timeout. Errors wrapping ErrInvalidURL or ErrDestinationRefused are marked retry.Permanent:
// no retry can fix them. When headers arrived but the body could not be read in time, the error comes
// with the StatusCode that did arrive; the attempt has still failed.
func (s *Sender) Send(ctx context.Context, req Request) (Response, error) {
	resp, err := s.send(ctx, req)
	if errors.Is(err, ErrInvalidURL) || errors.Is(err, ErrDestinationRefused) {
		err = retry.Permanent(err)
	}
	return resp, err
}

func (s *Sender) send(ctx context.Context, req Request) (Response, error) {
	if _, err := parseURL(req.URL); err != nil {
		return Response{}, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()

	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		// parseURL accepted the URL, so this cannot happen; the message still leaves the URL out.
		return Response{}, fmt.Errorf("%w: cannot build request", ErrInvalidURL)
	}
	switch {
	case req.Header.Get("User-Agent") == s.userAgent:
		// Sent as is, which saves a copy per attempt: net/http does not change it.
		httpReq.Header = req.Header
	case req.Header != nil:
		httpReq.Header = req.Header.Clone()
		httpReq.Header.Set("User-Agent", s.userAgent)
	default:
		httpReq.Header.Set("User-Agent", s.userAgent)
	}

	start := time.Now()
	resp, err := s.client.Do(httpReq)
	if err != nil {
		return Response{Duration: time.Since(start)}, s.attemptError(parent, ctx, "post", err)
	}
	out := Response{StatusCode: resp.StatusCode}
	out.Body, err = readBody(resp.Body)
	// Closing before the end of the body closes the connection instead of draining it.
	resp.Body.Close()
	out.Duration = time.Since(start)
	if err != nil {
		return out, s.attemptError(parent, ctx, "read response body", err)
	}
	out.RetryAfter = parseRetryAfter(resp.Header.Get(HeaderRetryAfter), s.now())
	return out, nil
}

// Close closes the idle keep-alive connections. The Sender stays usable; attempts in flight
// are not interrupted.
func (s *Sender) Close() {
	s.transport.CloseIdleConnections()
}

// control is the dialer's hook, called with the resolved address of every connection attempt.
func (s *Sender) control(_, address string, _ syscall.RawConn) error {
	if s.guard == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: an address the guard cannot read is not one it has allowed.
		return fmt.Errorf("%w: cannot check dialled address %q", ErrDestinationRefused, address)
	}
	return s.guard(ap)
}

// readBody reads at most maxReadBytes of r and keeps the first maxKeptBytes.
func readBody(r io.Reader) ([]byte, error) {
	limited := io.LimitReader(r, maxReadBytes)
	head, err := io.ReadAll(io.LimitReader(limited, maxKeptBytes))
	if err != nil {
		return head, err
	}
	_, err = io.Copy(io.Discard, limited)
	return head, err
}

// attemptError shapes a failed attempt's error for the delivery log. It becomes last_error, so
// it names what went wrong and nothing more: the *url.Error wrapper, which repeats the URL the
// caller already has, is dropped, and a refused destination is returned as is.
func (s *Sender) attemptError(parent, ctx context.Context, op string, err error) error {
	var refused *refusedError
	if errors.As(err, &refused) {
		return refused
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	if ctx.Err() == context.DeadlineExceeded && parent.Err() == nil {
		// Our own timeout, not the caller's context: say which limit was hit.
		return fmt.Errorf("%s: timed out after %s: %w", op, s.timeout, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
