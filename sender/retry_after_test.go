package sender

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"
)

var retryNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{"  30 ", 30 * time.Second},
		{"007", 7 * time.Second},
		{"-5", 0},
		{"+5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999999999999999", time.Duration(maxRetryAfterSeconds) * time.Second},
		{retryNow.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"Friday, 14-Mar-25 15:10:26 GMT", time.Minute}, // RFC 850
		{"Fri Mar 14 15:11:26 2025", 2 * time.Minute},   // ANSI C asctime
		{retryNow.Add(-time.Hour).Format(http.TimeFormat), 0},
		{retryNow.Format(http.TimeFormat), 0},
		{"Fri, 14 Mar 2025 25:00:00 GMT", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.value, retryNow); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

// TestSendRetryAfter goes through a real receiver, which answers with the status and
// Retry-After the test asks for, to show that the header is read whatever the status (retry.Decide says which statuses
// heed it).
func TestSendRetryAfter(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		if v := r.Header.Get("X-Test-Retry-After"); v != "" {
			w.Header().Set("Retry-After", v)
		}
		code, _ := strconv.Atoi(r.Header.Get("X-Test-Status"))
		w.WriteHeader(code)
	})
	s := newSender(t, Options{AllowPrivateNetworks: true, Now: func() time.Time { return retryNow }})
	date := retryNow.Add(10 * time.Minute).Format(http.TimeFormat)
	tests := []struct {
		status     int
		retryAfter string
		want       time.Duration
	}{
		{429, "120", 2 * time.Minute},
		{503, "120", 2 * time.Minute},
		{503, date, 10 * time.Minute},
		{429, retryNow.Add(-time.Minute).Format(http.TimeFormat), 0},
		{429, "tomorrow", 0},
		{429, "-30", 0},
		{429, "", 0},
		{200, "120", 2 * time.Minute},
		{500, "120", 2 * time.Minute},
		{302, date, 10 * time.Minute},
	}
	for _, tt := range tests {
		header := http.Header{"X-Test-Status": {strconv.Itoa(tt.status)}}
		if tt.retryAfter != "" {
			header.Set("X-Test-Retry-After", tt.retryAfter)
		}
		resp, err := s.Send(context.Background(), Request{URL: srv.URL, Header: header})
		if err != nil {
			t.Fatalf("Send(%d, %q): %v", tt.status, tt.retryAfter, err)
		}
		if resp.StatusCode != tt.status || resp.RetryAfter != tt.want {
			t.Errorf("Send(%d, Retry-After %q) = status %d, RetryAfter %v; want %d, %v",
				tt.status, tt.retryAfter, resp.StatusCode, resp.RetryAfter, tt.status, tt.want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "-1", retryNow.Format(http.TimeFormat), "Fri Mar 14 15:11:26 2025", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if d := parseRetryAfter(value, retryNow); d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, want >= 0", value, d)
		}
	})
}
