package sender

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"testing"
)

// TestGuardRefusesLocalDestinations aims every spelling of "this machine" we know at live
// canaries on 127.0.0.1 and ::1 with the guard on. Every attempt must fail as refused or
// invalid, and no canary may see a single request.
func TestGuardRefusesLocalDestinations(t *testing.T) {
	t.Parallel()
	c4 := newCanary(t, "tcp4", "127.0.0.1:0")
	if c4 == nil {
		t.Fatal("cannot listen on 127.0.0.1")
	}
	p4 := c4.port()
	type attempt struct {
		url  string
		want error
	}
	attempts := []attempt{
		{"http://127.0.0.1:" + p4 + "/", ErrDestinationRefused},
		{"https://127.0.0.1:" + p4 + "/", ErrDestinationRefused},
		{"http://localhost:" + p4 + "/", ErrDestinationRefused},
		{"http://0.0.0.0:" + p4 + "/", ErrDestinationRefused}, // Linux connects 0.0.0.0 to the local host
		{"http://[::ffff:127.0.0.1]:" + p4 + "/", ErrDestinationRefused},
		{"http://[::ffff:7f00:1]:" + p4 + "/", ErrDestinationRefused},
		{"http://2130706433:" + p4 + "/", ErrInvalidURL},
		{"http://0x7f000001:" + p4 + "/", ErrInvalidURL},
		{"http://0177.0.0.1:" + p4 + "/", ErrInvalidURL},
		{"http://017700000001:" + p4 + "/", ErrInvalidURL},
		{"http://127.1:" + p4 + "/", ErrInvalidURL},
		// Not listening here, but refused before any packet leaves: Control runs before connect.
		{"http://169.254.169.254/latest/meta-data/", ErrDestinationRefused},
		{"http://10.0.0.1:1/", ErrDestinationRefused},
		{"http://[fd00:ec2::254]/", ErrDestinationRefused},
		{"http://[64:ff9b::a9fe:a9fe]/", ErrDestinationRefused},
	}
	c6 := newCanary(t, "tcp6", "[::1]:0")
	if c6 != nil {
		p6 := c6.port()
		attempts = append(attempts,
			attempt{"http://[::1]:" + p6 + "/", ErrDestinationRefused},
			attempt{"http://[::]:" + p6 + "/", ErrDestinationRefused},
			attempt{"http://[0:0:0:0:0:0:0:1]:" + p6 + "/", ErrDestinationRefused},
		)
	} else {
		t.Log("no IPv6 loopback here: skipping the [::1] attempts")
	}

	s := newSender(t, Options{})
	for _, a := range attempts {
		resp, err := s.Send(context.Background(), Request{URL: a.url, Body: []byte("{}")})
		if !errors.Is(err, a.want) {
			t.Errorf("Send(%s) = %d, %v; want an error wrapping %v", a.url, resp.StatusCode, err, a.want)
			continue
		}
		t.Logf("%s: %v", a.url, err)
	}
	if n := c4.hits.Load(); n != 0 {
		t.Errorf("127.0.0.1 canary got %d requests, want 0", n)
	}
	if c6 != nil && c6.hits.Load() != 0 {
		t.Errorf("::1 canary got %d requests, want 0", c6.hits.Load())
	}
}

// TestGuardedRedirectNotFollowed exempts one local receiver from the guard and lets it
// redirect to a canary on loopback: the 302 comes back as the answer and the canary stays
// untouched.
func TestGuardedRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	c := newCanary(t, "tcp4", "127.0.0.1:0")
	redirector := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		http.Redirect(w, r, c.srv.URL+"/", http.StatusFound)
	})
	exempt := netip.MustParseAddrPort(redirector.Listener.Addr().String())
	s := newSender(t, Options{})
	s.guard = func(ap netip.AddrPort) error {
		if ap == exempt {
			return nil
		}
		return checkDestination(ap)
	}

	resp, err := s.Send(context.Background(), Request{URL: redirector.URL})
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("Send = %d, %v; want 302 and no error", resp.StatusCode, err)
	}
	if n := c.hits.Load(); n != 0 {
		t.Errorf("canary got %d requests after a redirect, want 0", n)
	}
	// The exemption is for that one listener only: the canary itself stays refused.
	if _, err := s.Send(context.Background(), Request{URL: c.srv.URL}); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("Send to the canary = %v, want ErrDestinationRefused", err)
	}
}

func TestAllowPrivateNetworksLiftsGuard(t *testing.T) {
	t.Parallel()
	c := newCanary(t, "tcp4", "127.0.0.1:0")
	s := newSender(t, Options{AllowPrivateNetworks: true})
	resp, err := s.Send(context.Background(), Request{URL: c.srv.URL})
	if err != nil || resp.StatusCode != http.StatusOK || string(resp.Body) != "canary reached" {
		t.Fatalf("Send = %+v, %v; want 200 from the local receiver", resp, err)
	}
	if n := c.hits.Load(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
}
