package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// operations are the "METHOD path" pairs of /openapi.json, with the scope each declares.
func operations(t *testing.T) map[string]string {
	t.Helper()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Scope     string          `json:"x-scope"`
			Responses map[string]any  `json:"responses"`
			Security  json.RawMessage `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want OpenAPI 3", doc.OpenAPI)
	}
	ops := map[string]string{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			if len(op.Responses) == 0 || op.Security == nil {
				t.Errorf("%s %s: no responses or no security", method, path)
			}
			ops[strings.ToUpper(method)+" "+path] = op.Scope
		}
	}
	return ops
}

// /openapi.json is the one description: every route the server has is in it with its scope,
// and every operation in it is a route the server has.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s, err := New(Options{Secret: testSecret, Queue: "q"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ops := operations(t)
	var routes []string
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.path
		routes = append(routes, key)
		scope, ok := ops[key]
		switch {
		case !ok:
			t.Errorf("route %s is not in openapi.json", key)
		case scope != rt.scope:
			t.Errorf("route %s needs scope %q, openapi.json says %q", key, rt.scope, scope)
		}
	}
	for key := range ops {
		if !slices.Contains(routes, key) {
			t.Errorf("openapi.json has %s, which the server does not route", key)
		}
	}

	// And the router serves each of them: the API's own answer, never the mux's 404 or 405.
	h := s.Handler()
	for key := range ops {
		method, path, _ := strings.Cut(key, " ")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, strings.ReplaceAll(path, "{id}", "1"), nil))
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			t.Errorf("%s answers %d: not routed", key, rec.Code)
		}
	}
	for _, key := range []string{"GET /v1/nothing", "DELETE /v1/webhooks/1", "GET /v1/deliveries/1/retry", "GET /"} {
		method, path, _ := strings.Cut(key, " ")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s, described nowhere, answers %d", key, rec.Code)
		}
	}
}

// The portal is served from the binary with a policy that allows no outside asset.
func TestPortalServed(t *testing.T) {
	s, _ := New(Options{Secret: testSecret, Queue: "q"}, nil, nil)
	h := s.Handler()
	for _, file := range []string{"/portal/", "/portal/portal.js", "/portal/portal.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", file, nil))
		if rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("GET %s = %d, %d bytes", file, rec.Code, rec.Body.Len())
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", file, csp)
		}
		for _, outside := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(rec.Body.String(), outside) {
				t.Errorf("%s refers to an outside address (%s)", file, outside)
			}
		}
	}
}

// Every timeout of the server is set, and request bodies are bounded.
func TestServerTimeouts(t *testing.T) {
	s, _ := New(Options{Secret: testSecret, Queue: "q"}, nil, nil)
	srv := s.httpServer(context.Background())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("server limits: read header %v, read %v, write %v, idle %v, header bytes %d; want all set",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	rec := httptest.NewRecorder()
	big := strings.NewReader(`{"status":"failed","x":"` + strings.Repeat("x", maxBodyBytes) + `"}`)
	req := httptest.NewRequest("POST", "/v1/deliveries/retry", big)
	req.Header.Set("Authorization", "Bearer "+token(t, 1, "write"))
	h := s.Handler()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"body: larger than 65536 bytes"`) {
		t.Errorf("a body over 64 KiB = %d %s, want 400 naming the body", rec.Code, rec.Body)
	}
}
