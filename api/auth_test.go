package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// sign makes a token with any claims, method and key, as an attacker or a careless minter
// could.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokensRefused(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	now := time.Now()
	good := jwt.MapClaims{"sub": "1", "exp": now.Add(time.Hour).Unix(), "scope": "read write"}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for key, val := range good {
			c[key] = val
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	valid := sign(t, jwt.SigningMethodHS256, testSecret, good)
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	none := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	noneSigned := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	tampered := parts[0] + "." + b64([]byte(`{"sub":"2","exp":`+strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+`,"scope":"read write"}`)) + "." + parts[2]

	tests := []struct {
		name, header string
	}{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"another scheme", "Basic " + valid},
		{"not a JWT", "Bearer not.a.token"},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-time.Hour).Unix()))},
		{"expired past the leeway", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-leeway-5*time.Second).Unix()))},
		{"not valid yet", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("nbf", now.Add(time.Hour).Unix()))},
		{"without exp", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("exp", nil))},
		{"signed with another key", "Bearer " + sign(t, jwt.SigningMethodHS256, otherSecret, good)},
		{"HS512 with the right key", "Bearer " + sign(t, jwt.SigningMethodHS512, testSecret, good)},
		{"alg none", "Bearer " + none},
		{"alg none with a signature", "Bearer " + noneSigned},
		{"alg none by the library", "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)},
		{"tampered payload", "Bearer " + tampered},
		{"sub missing", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("sub", nil))},
		{"sub not a number", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("sub", "acme"))},
		{"sub zero", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("sub", "0"))},
		{"sub with a leading zero", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("sub", "01"))},
		{"scope not a string", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("scope", []string{"read"}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", b.url+"/v1/webhooks", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}

	// The same claims, rightly signed, pass; so does a token a little past exp, within the
	// leeway for clock skew, and one whose scheme is spelt in lower case.
	b.ok(t, 200, "GET", "/v1/webhooks", valid, nil)
	b.ok(t, 200, "GET", "/v1/webhooks", sign(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-leeway/2).Unix())), nil)
	req, _ := http.NewRequest("GET", b.url+"/v1/webhooks", nil)
	req.Header.Set("Authorization", "bearer "+valid)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("lower-case bearer scheme: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
}

// Every /v1 route wants a token, and the scope its operation needs: read for reading, write
// for acting. A token without scope reads.
func TestEveryRouteNeedsTokenAndScope(t *testing.T) {
	t.Parallel()
	b := newAPIBed(t, nil)
	readOnly, writeOnly, noScope := token(t, 1, "read"), token(t, 1, "write"), token(t, 1, "")
	for _, rt := range b.srv.routes() {
		path := strings.ReplaceAll(rt.path, "{id}", "1")
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			if rt.scope == "" {
				if a := b.call(t, rt.method, path, "", nil); a.status != 200 {
					t.Errorf("public route without a token = %d, want 200", a.status)
				}
				return
			}
			if a := b.call(t, rt.method, path, "", nil); a.status != 401 {
				t.Errorf("without a token = %d %s, want 401", a.status, a.body)
			}
			lacking := writeOnly
			if rt.scope == scopeWrite {
				lacking = readOnly
			}
			a := b.call(t, rt.method, path, lacking, nil)
			if a.status != 403 || !strings.Contains(a.errorText(t), rt.scope) {
				t.Errorf("with a token lacking %s = %d %s, want 403 naming the scope", rt.scope, a.status, a.body)
			}
			a = b.call(t, rt.method, path, noScope, nil)
			if want := map[string]bool{scopeRead: true, scopeWrite: false}[rt.scope]; want == (a.status == 403) {
				t.Errorf("with a token without scope = %d, want 403 only for write routes", a.status)
			}
		})
	}
}

func TestMint(t *testing.T) {
	now := time.Now()
	if _, err := Mint(testSecret, 1, "admin", now, time.Hour); err == nil {
		t.Error("Mint with scope admin: no error")
	}
	if _, err := Mint(testSecret, 0, "read", now, time.Hour); err == nil {
		t.Error("Mint for account 0: no error")
	}
	if _, err := Mint(testSecret, 1, "read", now, 0); err == nil {
		t.Error("Mint with no ttl: no error")
	}
	tok, err := Mint(testSecret, 42, " write  read ", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(Options{Secret: testSecret, Queue: "q", Now: func() time.Time { return now }}, nil, nil)
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	c, err := s.authenticate(req)
	if err != nil || c.account != 42 || !c.read || !c.write {
		t.Errorf("authenticate(minted) = %+v, %v; want account 42 reading and writing", c, err)
	}
	// The injected clock decides expiry: a minute and the leeway later, the token is refused.
	s.opts.Now = func() time.Time { return now.Add(time.Minute + leeway + time.Second) }
	if _, err := s.authenticate(req); err == nil {
		t.Error("authenticate after exp and the leeway: no error")
	}
}
