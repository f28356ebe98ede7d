// Package signer computes the two signatures every delivery carries: webhookd's own
// X-Webhook-Signature and the Standard Webhooks webhook-signature.
//
// Both are pure functions of the token, the exact body bytes and, for Standard Webhooks, the
// delivery id and the attempt's timestamp. Tokens are only ever used as keys, never returned.
package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// whsecPrefix marks a Standard Webhooks secret whose key is the base64 text after it.
const whsecPrefix = "whsec_"

// Signature is the X-Webhook-Signature value: "sha256=" and the lower-case hex of
// HMAC-SHA256(key = token bytes, message = body).
func Signature(token string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// StandardSignature is the Standard Webhooks webhook-signature value: "v1," and the base64 of
// HMAC-SHA256 over "id.timestamp.body". The key is the token's bytes, or the base64-decoded
// rest of a token that starts with "whsec_" (the raw bytes if that rest is not base64).
func StandardSignature(token, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, standardKey(token))
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func standardKey(token string) []byte {
	rest, ok := strings.CutPrefix(token, whsecPrefix)
	if !ok {
		return []byte(token)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return []byte(token)
	}
	return key
}

// Verify reports whether signature is the X-Webhook-Signature of body under token, in
// constant time.
func Verify(token string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Signature(token, body)), []byte(signature))
}

// VerifyStandard reports whether any of the space-separated signatures in header is the
// Standard Webhooks signature of (id, timestamp, body) under token, in constant time.
func VerifyStandard(token, id string, timestamp int64, body []byte, header string) bool {
	want := []byte(StandardSignature(token, id, timestamp, body))
	ok := false
	for _, sig := range strings.Fields(header) {
		if hmac.Equal(want, []byte(sig)) {
			ok = true
		}
	}
	return ok
}
