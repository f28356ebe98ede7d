package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newSender returns a Sender that is closed when the test ends.
func newSender(t *testing.T, opts Options) *Sender {
	t.Helper()
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

// newServer starts a receiver on 127.0.0.1, closed when the test ends. Its connections are cut
// first, so a handler blocked on r.Context() returns even if the test failed half-way; handlers
// drain the request body before blocking, because only then does net/http watch the connection.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // hostile clients make the server chatty
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// hang answers nothing until the client goes away.
func hang(w http.ResponseWriter, r *http.Request) {
	drain(r)
	<-r.Context().Done()
}

// canary is a receiver that must never be reached; it counts the requests that reach it.
type canary struct {
	srv  *httptest.Server
	hits atomic.Int64
}

// newCanary listens on addr ("127.0.0.1:0", "[::1]:0"); it returns nil if that is impossible,
// as it is for IPv6 on a host without it.
func newCanary(t *testing.T, network, addr string) *canary {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil
	}
	c := &canary{}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		io.WriteString(w, "canary reached")
	}))
	c.srv.Listener.Close()
	c.srv.Listener = ln
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *canary) port() string {
	_, port, _ := net.SplitHostPort(c.srv.Listener.Addr().String())
	return port
}

// drain reads the request body, which also lets the server notice when the client goes away.
func drain(r *http.Request) {
	io.Copy(io.Discard, r.Body)
}

func TestSendPostsRequest(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, ua, sig, contentType string
		body                         []byte
	}
	got := make(chan seen, 1)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.UserAgent(), r.Header.Get("X-Webhook-Signature"), r.Header.Get("Content-Type"), body}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "thanks")
	})
	s := newSender(t, Options{AllowPrivateNetworks: true, UserAgent: "webhookd/1.2.3"})

	header := http.Header{"Content-Type": {"application/json"}, "X-Webhook-Signature": {"sha256=abc"}, "User-Agent": {"curl"}}
	resp, err := s.Send(context.Background(), Request{URL: srv.URL + "/hook", Header: header, Body: []byte(`{"a":1}`)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if resp.StatusCode != http.StatusAccepted || string(resp.Body) != "thanks" || resp.Duration <= 0 {
		t.Errorf("Send = %+v, want 202, body %q and a duration", resp, "thanks")
	}
	r := <-got
	want := seen{"POST", "webhookd/1.2.3", "sha256=abc", "application/json", []byte(`{"a":1}`)}
	if r.method != want.method || r.ua != want.ua || r.sig != want.sig || r.contentType != want.contentType || !bytes.Equal(r.body, want.body) {
		t.Errorf("receiver saw %+v, want %+v", r, want)
	}
	if header.Get("User-Agent") != "curl" {
		t.Error("Send modified the caller's header")
	}
}

func TestSendKeepsFirstKiB(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789", 500) // 5000 bytes: over the kept 1 KiB, under the 64 KiB read
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, body)
	})
	s := newSender(t, Options{AllowPrivateNetworks: true})
	resp, err := s.Send(context.Background(), Request{URL: srv.URL})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if resp.StatusCode != 500 || string(resp.Body) != body[:1024] {
		t.Errorf("Send = status %d, body of %d bytes; want 500 and the first 1024 bytes", resp.StatusCode, len(resp.Body))
	}
}

func TestSendReusesConnections(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		io.WriteString(w, strings.Repeat("x", 10<<10)) // read to its end, so the connection is reusable
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newSender(t, Options{AllowPrivateNetworks: true})
	for i := 0; i < 5; i++ {
		if _, err := s.Send(context.Background(), Request{URL: srv.URL, Body: []byte("x")}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("5 sequential sends opened %d connections, want 1", got)
	}
}

// TestSendHTTP2 trusts the test server's certificate through the transport's own TLS config,
// which only a test in this package can reach; verification stays on.
func TestSendHTTP2(t *testing.T) {
	t.Parallel()
	proto := make(chan int, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		proto <- r.ProtoMajor
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	s := newSender(t, Options{AllowPrivateNetworks: true})
	s.transport.TLSClientConfig = &tls.Config{RootCAs: roots}

	resp, err := s.Send(context.Background(), Request{URL: srv.URL})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("Send = %+v, %v; want 200", resp, err)
	}
	if got := <-proto; got != 2 {
		t.Errorf("request went over HTTP/%d, want HTTP/2", got)
	}
}

func TestTransportIgnoresEnvironmentProxy(t *testing.T) {
	t.Parallel()
	// Go never proxies requests to loopback, so this cannot be shown end to end with a local
	// proxy; the transport's setting is what keeps HTTP_PROXY from dialling past the guard.
	if s := newSender(t, Options{}); s.transport.Proxy != nil {
		t.Error("transport has a Proxy func; want nil")
	}
}

func TestSendHonoursCallerContext(t *testing.T) {
	t.Parallel()
	srv := newServer(t, hang)
	s := newSender(t, Options{AllowPrivateNetworks: true, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := s.Send(ctx, Request{URL: srv.URL})
	if err == nil || strings.Contains(err.Error(), "timed out after") {
		t.Errorf("Send with a cancelled caller context = %v, want the context's error, not the attempt timeout", err)
	}
}

// TestErrorsNeverCarryHeaders sends a request whose headers hold secrets through every way an
// attempt can fail, and looks for the secrets in the errors, which end up in the delivery log.
func TestErrorsNeverCarryHeaders(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-7f1e9a"
	header := http.Header{
		"X-Webhook-Signature": {"sha256=" + secret},
		"Webhook-Signature":   {"v1," + secret},
		"Authorization":       {"Bearer " + secret},
	}
	hanging := newServer(t, hang)
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()

	guarded := newSender(t, Options{})
	open := newSender(t, Options{AllowPrivateNetworks: true, Timeout: 300 * time.Millisecond})
	tests := []struct {
		name   string
		s      *Sender
		url    string
		header http.Header
	}{
		{"invalid URL", guarded, "ftp://example.com/", header},
		{"refused destination", guarded, hanging.URL, header},
		{"connection refused", open, "http://" + closedPort, header},
		{"timeout", open, hanging.URL, header},
		{"certificate", open, tlsSrv.URL, header},
		{"invalid header value", open, hanging.URL, http.Header{"X-Webhook-Signature": {secret + "\r\nX-Evil: 1"}}},
	}
	for _, tt := range tests {
		_, err := tt.s.Send(context.Background(), Request{URL: tt.url, Header: tt.header, Body: []byte(secret[:4])})
		if err == nil {
			t.Errorf("%s: Send succeeded, want an error", tt.name)
			continue
		}
		for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(text, secret) {
				t.Errorf("%s: error %q carries a header value", tt.name, text)
			}
		}
		t.Logf("%s: %v", tt.name, err)
	}
}
