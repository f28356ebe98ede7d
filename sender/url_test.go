package sender

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		want bool // accepted
	}{
		{"http://example.com/hook", true},
		{"https://example.com:8443/hook?x=1", true},
		{"HTTPS://Example.COM/", true},
		{"https://user:pass@example.com/", true},
		{"http://8.8.8.8/", true},
		{"http://[2606:4700::1111]/", true},
		{"http://127.0.0.1:8080/", true}, // valid; refused later, by the guard, when dialled
		{"http://a1.example.2b/", true},  // a last label with letters is a name
		{"http://example.com./", true},

		{"", false},
		{"garbage", false},
		{"/relative/path", false},
		{"example.com/hook", false},
		{"ftp://example.com/", false},
		{"file:///etc/passwd", false},
		{"gopher://example.com/", false},
		{"javascript:alert(1)", false},
		{"http:example.com", false},
		{"http:///path", false},
		{"http://:80/", false},
		{"http://example.com:0/", false},
		{"http://example.com:65536/", false},
		{"http://example.com:port/", false},
		{"http://exa mple.com/", false},
		{"http://[::1/", false},
		{"http://%zz/", false},

		// Hosts whose meaning depends on who parses them.
		{"http://2130706433/", false},
		{"http://0x7f000001/", false},
		{"http://0X7F.0.0.1/", false},
		{"http://0177.0.0.1/", false},
		{"http://017700000001/", false},
		{"http://127.1/", false},
		{"http://127.0.1/", false},
		{"http://127.0.0.1./", false},
		{"http://1.2.3.4.5/", false},
		{"http://256.0.0.1/", false},
		{"http://example.0x10/", false},
		{"http://example.123/", false},
		{"http://0x/", false},
	}
	for _, tt := range tests {
		_, err := parseURL(tt.url)
		if got := err == nil; got != tt.want {
			t.Errorf("parseURL(%q) accepted = %v, want %v (err %v)", tt.url, got, tt.want, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidURL) {
			t.Errorf("parseURL(%q) = %v, want it to wrap ErrInvalidURL", tt.url, err)
		}
	}
}

func TestParseURLErrorOmitsCredentials(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"http://user:s3cr3t@example.com:99999/",
		"ftp://user:s3cr3t@example.com/",
		"http://user:s3cr3t@[::1/",
	} {
		_, err := parseURL(raw)
		if err == nil {
			t.Fatalf("parseURL(%q) = nil error", raw)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("parseURL(%q) error %q repeats the password", raw, err)
		}
	}
}

// FuzzParseURL checks that whatever parseURL accepts is an http or https URL with a host that
// means the same to every resolver.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"http://example.com/", "https://[::1]:8443/x", "http://2130706433/", "ftp://x/", "http://0x7f.1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseURL(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("parseURL(%q) = %v, want it to wrap ErrInvalidURL", raw, err)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("parseURL(%q) accepted scheme %q", raw, u.Scheme)
		}
		host := u.Hostname()
		if host == "" {
			t.Fatalf("parseURL(%q) accepted an empty host", raw)
		}
		labels := strings.Split(strings.TrimSuffix(host, "."), ".")
		if isNumber(labels[len(labels)-1]) && !strings.Contains(host, ":") {
			if _, err := netip.ParseAddr(host); err != nil {
				t.Fatalf("parseURL(%q) accepted numeric host %q", raw, host)
			}
		}
	})
}
