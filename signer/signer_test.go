package signer_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/webhookd/webhookd/signer"
)

// The test vector published with the Standard Webhooks specification and its libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestStandardSignatureVector(t *testing.T) {
	got := signer.StandardSignature(vectorSecret, vectorID, vectorTimestamp, []byte(vectorBody))
	if got != vectorSignature {
		t.Fatalf("StandardSignature = %q, want %q", got, vectorSignature)
	}
	if !signer.VerifyStandard(vectorSecret, vectorID, vectorTimestamp, []byte(vectorBody), "v1,bad "+vectorSignature) {
		t.Fatal("VerifyStandard rejected the vector among several signatures")
	}
}

func TestSignature(t *testing.T) {
	tests := []struct {
		token, body, want string
	}{
		// Computed independently: printf '%s' body | openssl dgst -sha256 -hmac token
		{"secret", `{"a":1}`, "sha256=aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494"},
		{"", "", "sha256=b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
	}
	for _, tt := range tests {
		if got := signer.Signature(tt.token, []byte(tt.body)); got != tt.want {
			t.Errorf("Signature(%q, %q) = %q, want %q", tt.token, tt.body, got, tt.want)
		}
		if !signer.Verify(tt.token, []byte(tt.body), tt.want) {
			t.Errorf("Verify(%q, %q) = false", tt.token, tt.body)
		}
	}
}

// TestStandardSignatureIndependentVerifier checks our signatures with the Standard Webhooks
// reference library, for whsec_ secrets and plain tokens alike.
func TestStandardSignatureIndependentVerifier(t *testing.T) {
	body := []byte(`{"event":"TASK.CREATED","data":{"n":12345678901234567890}}`)
	ts := time.Now().Unix()
	for _, secret := range []string{vectorSecret, "whsec_" + "c2VjcmV0LWtleS1ieXRlcw=="} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatalf("NewWebhook: %v", err)
		}
		h := http.Header{}
		h.Set("webhook-id", "d_0123")
		h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		h.Set("webhook-signature", signer.StandardSignature(secret, "d_0123", ts, body))
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("reference verifier rejected signature for %q: %v", secret, err)
		}
	}
	raw, err := standardwebhooks.NewWebhookRaw([]byte("plain-token"))
	if err != nil {
		t.Fatalf("NewWebhookRaw: %v", err)
	}
	h := http.Header{}
	h.Set("webhook-id", "d_1")
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", signer.StandardSignature("plain-token", "d_1", ts, body))
	if err := raw.Verify(body, h); err != nil {
		t.Errorf("reference verifier rejected a plain-token signature: %v", err)
	}
}
