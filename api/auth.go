package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scopes a token may grant (claim "scope", space-separated; absent means read).
const (
	scopeRead  = "read"
	scopeWrite = "write"
)

// leeway is the clock skew allowed between the monolith minting tokens and the API.
const leeway = 30 * time.Second

// Claims are a token's claims: sub is the account id in decimal, exp is required.
type Claims struct {
	// Scope is "read", "write" or both, space-separated; empty means read.
	Scope string `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// Mint returns a token for account granting scope (empty: read), signed with HS256 and
// secret, issued at now and expiring ttl later.
func Mint(secret []byte, account uint64, scope string, now time.Time, ttl time.Duration) (string, error) {
	if account == 0 {
		return "", errors.New("mint token: account must be positive")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	for _, s := range strings.Fields(scope) {
		if s != scopeRead && s != scopeWrite {
			return "", fmt.Errorf("mint token: unknown scope %q, want read and/or write", s)
		}
	}
	claims := Claims{
		Scope: strings.Join(strings.Fields(scope), " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.FormatUint(account, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

// caller is who a verified token speaks for.
type caller struct {
	account     uint64
	read, write bool
}

func (c caller) has(scope string) bool {
	switch scope {
	case scopeRead:
		return c.read
	case scopeWrite:
		return c.write
	}
	return false
}

// authenticate verifies the request's bearer token: HS256 with the server's key only (alg
// none and every other algorithm refused before any signature check), exp required and
// passed by no more than the leeway, sub a positive account id.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	raw, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return caller{}, unauthorized("missing bearer token in the Authorization header")
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.opts.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(s.opts.Now),
	)
	if err != nil {
		return caller{}, unauthorized("invalid token: " + err.Error())
	}
	account, err := strconv.ParseUint(claims.Subject, 10, 64)
	if err != nil || account == 0 || strconv.FormatUint(account, 10) != claims.Subject {
		return caller{}, unauthorized("invalid token: sub must be the account id in decimal")
	}
	c := caller{account: account}
	scopes := strings.Fields(claims.Scope)
	if len(scopes) == 0 {
		scopes = []string{scopeRead}
	}
	for _, sc := range scopes {
		c.read = c.read || sc == scopeRead
		c.write = c.write || sc == scopeWrite
	}
	return c, nil
}

// bearer returns the token of an "Authorization: Bearer <token>" header; the scheme is
// case-insensitive (RFC 7235).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}
