package sender

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// parseURL accepts only absolute http and https URLs with a host, and returns errors wrapping
// ErrInvalidURL. The messages never repeat the URL, which may carry credentials.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // url.Error quotes the whole URL
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	switch {
	case u.Scheme == "":
		return nil, fmt.Errorf("%w: no scheme", ErrInvalidURL)
	case u.Scheme != "http" && u.Scheme != "https": // url.Parse lower-cases the scheme
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidURL, u.Scheme)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: port %s is out of range", ErrInvalidURL, p)
		}
	}
	if err := checkNumericHost(u.Hostname()); err != nil {
		return nil, err
	}
	return u, nil
}

// checkNumericHost refuses hosts that only look like IPv4 addresses, such as 2130706433,
// 0x7f000001, 0177.0.0.1 or 127.1. Go's own resolver takes them for DNS names and asks the DNS
// server about them, while browsers, curl and the C resolver (which Go uses in some setups)
// read them all as 127.0.0.1. The dial guard would refuse them either way, but a host whose
// meaning depends on the resolver is not a valid destination. The rule is the URL Standard's:
// a host whose last label is a number must be an IPv4 address, here in plain dotted decimal.
func checkNumericHost(host string) error {
	if strings.Contains(host, ":") {
		return nil // a bracketed IPv6 literal: parsed exactly, and judged by the guard
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if !isNumber(labels[len(labels)-1]) {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return nil
	}
	return fmt.Errorf("%w: host %q is not a dotted-decimal IPv4 address, but is read as one by browsers and C resolvers", ErrInvalidURL, host)
}

// isNumber reports whether a host label reads as a number in the URL Standard's IPv4 parser:
// decimal digits, or 0x followed by hex digits (octal has leading zeros and is decimal digits).
func isNumber(label string) bool {
	digits := "0123456789"
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		label, digits = label[2:], "0123456789abcdefABCDEF"
		if label == "" {
			return true // "0x" alone is zero
		}
	}
	if label == "" {
		return false
	}
	for _, c := range label {
		if !strings.ContainsRune(digits, c) {
			return false
		}
	}
	return true
}
