package delivery

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/webhookd/webhookd/retry"
)

// TestOutage plays sequences of attempt outcomes against the outage detector on a clock
// passed in (3 hosts, a 10 s window, started at 0) and checks, step by step, whether each
// failure is set aside, began the outage, and whether the worker is in one.
func TestOutage(t *testing.T) {
	t.Parallel()
	type step struct {
		at     time.Duration
		host   string // "": an HTTP answer
		aside  bool
		began  bool
		in     bool
		paused bool // what Paused answers right after the step (while in an outage)
	}
	s := time.Second
	tests := []struct {
		name  string
		hosts int
		steps []step
	}{
		{"one host down alone counts from the first failure", 3, []step{
			{at: 1 * s, host: "a"}, {at: 2 * s, host: "a"}, {at: 30 * s, host: "a"},
		}},
		{"one host down beside hosts that answer counts", 3, []step{
			{at: 1 * s, host: "a"}, {at: 1 * s}, {at: 2 * s, host: "b"}, {at: 2 * s}, {at: 3 * s, host: "c"},
		}},
		{"a second host without an answer is suspect within the window", 3, []step{
			{at: 1 * s, host: "a"}, {at: 2 * s, host: "b", aside: true}, {at: 3 * s, host: "a", aside: true},
		}},
		{"suspicion ends a window after the first failure: fewer hosts than the threshold count", 3, []step{
			{at: 1 * s, host: "a"}, {at: 2 * s, host: "b", aside: true}, {at: 11 * s, host: "b"}, {at: 12 * s, host: "a"},
		}},
		{"enough hosts, but an answer within the window: suspect, not an outage", 3, []step{
			{at: 0}, {at: 1 * s, host: "a"}, {at: 2 * s, host: "b", aside: true}, {at: 3 * s, host: "c", aside: true},
		}},
		{"enough hosts and no answer for a window: outage, and one message a second", 3, []step{
			{at: 1 * s, host: "a"}, {at: 2 * s, host: "b", aside: true}, {at: 3 * s, host: "c", aside: true},
			{at: 10 * s, host: "a", aside: true, began: true, in: true, paused: true},
			{at: 10*s + 500*time.Millisecond, host: "b", aside: true, in: true, paused: true},
			{at: 11 * s, host: "c", aside: true, in: true, paused: false},
			{at: 11*s + time.Millisecond, host: "x", aside: true, in: true, paused: true},
		}},
		{"in an outage even a single host's failure is set aside; an answer ends it", 3, []step{
			{at: 3 * s, host: "a"}, {at: 4 * s, host: "b", aside: true}, {at: 12 * s, host: "c", aside: true, began: true, in: true, paused: true},
			{at: 13 * s, host: "a", aside: true, in: true},
			{at: 14 * s},
			{at: 15 * s, host: "a"},
		}},
		{"hosts that failed more than a window ago are forgotten", 3, []step{
			{at: 1 * s, host: "a"}, {at: 12 * s, host: "b"}, {at: 13 * s, host: "c"},
			{at: 14 * s, host: "d", aside: true, began: true, in: true, paused: true},
		}},
		{"0 hosts: never", 0, []step{
			{at: 1 * s, host: "a"}, {at: 2 * s, host: "b"}, {at: 3 * s, host: "c"}, {at: 20 * s, host: "d"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
			now := start
			o := newOutage(tt.hosts, 10*time.Second, func() time.Time { return now })
			for i, st := range tt.steps {
				now = start.Add(st.at)
				var aside, began bool
				if st.host == "" {
					o.answer()
				} else {
					aside, began = o.fail(st.host)
				}
				paused := o.Paused()
				if aside != st.aside || began != st.began || o.In() != st.in || paused != st.paused {
					t.Errorf("step %d (%v, host %q): aside %v began %v in %v paused %v; want %v %v %v %v",
						i, st.at, st.host, aside, began, o.In(), paused, st.aside, st.began, st.in, st.paused)
				}
			}
		})
	}
}

func TestConnectionFailure(t *testing.T) {
	t.Parallel()
	refused := errors.New("post: dial tcp 127.0.0.2:80: connect: connection refused")
	tests := []struct {
		status int
		err    error
		want   bool
	}{
		{0, refused, true},
		{0, errors.New("post: timed out after 10s"), true},
		{0, retry.Permanent(errors.New("destination refused")), false},
		{0, fmt.Errorf("wrapped: %w", retry.Permanent(errors.New("invalid URL"))), false},
		{500, nil, false},
		{200, errors.New("read response body: unexpected EOF"), false},
		{0, nil, false},
	}
	for _, tt := range tests {
		if got := connectionFailure(tt.status, tt.err); got != tt.want {
			t.Errorf("connectionFailure(%d, %v) = %v, want %v", tt.status, tt.err, got, tt.want)
		}
	}
}

func TestHostOf(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"http://127.0.0.2:8080/hook": "127.0.0.2",
		"https://Example.com/x":      "Example.com",
		"http://[::1]:80/":           "::1",
		"%%":                         "%%",
	} {
		if got := hostOf(url); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", url, got, want)
		}
	}
}
