package sender

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfterSeconds keeps a huge delta from overflowing time.Duration. The retry ladder
// caps the wait at its longest delay anyway, so nothing is lost by capping here.
const maxRetryAfterSeconds = math.MaxInt64 / int64(time.Second)

// parseRetryAfter reads a Retry-After value, delta-seconds or an HTTP date (RFC 9110 §10.2.3),
// as a delay from now. It returns 0 for an empty, invalid, negative or past value, so a
// receiver can only ever ask for more time, never for an earlier attempt.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if isDigits(value) {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n > maxRetryAfterSeconds {
			// Only overflow fails on digits: the receiver asked for longer than we can count.
			n = maxRetryAfterSeconds
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// isDigits reports whether s is 1*DIGIT, the delta-seconds grammar: strconv alone would also
// take a sign.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
