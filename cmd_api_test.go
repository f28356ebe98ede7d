package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
)

const apiSecret = "WEBHOOKD_API_SECRET=secret-of-the-cli-tests-32-bytes!"

// Without WEBHOOKD_API_SECRET the API's commands stop at start naming it; the worker does
// not need it.
func TestAPICommandsNeedTheSecret(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"api"}, {"token", "--account", "1"}} {
		_, stderr, code := webhookd(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, "WEBHOOKD_API_SECRET") {
			t.Errorf("%v without a secret: exit %d, stderr %q; want exit 2 naming WEBHOOKD_API_SECRET", args, code, stderr)
		}
	}
	_, stderr, code := webhookd(t, []string{"WEBHOOKD_API_SECRET=short"}, "token", "--account", "1")
	if code != 2 || !strings.Contains(stderr, "WEBHOOKD_API_SECRET") || strings.Contains(stderr, "short") {
		t.Errorf("a short secret: exit %d, stderr %q; want exit 2 naming the variable, not its value", code, stderr)
	}
	for _, args := range [][]string{{"token"}, {"token", "--account", "1", "--scope", "admin"}, {"token", "--account", "1", "--ttl", "-1m"}} {
		if _, _, code := webhookd(t, []string{apiSecret}, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// `webhookd token` prints an HS256 JWT for the account with the scope and lifetime asked for.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	stdout, stderr, code := webhookd(t, []string{apiSecret}, "token", "--account", "42", "--scope", "read write", "--ttl", "10m")
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr)
	}
	parts := strings.Split(strings.TrimSpace(stdout), ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", stdout)
	}
	var header struct{ Alg string }
	var claims struct {
		Sub   string
		Scope string
		Exp   int64
	}
	for i, v := range []any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, v) != nil {
			t.Fatalf("token part %d: %q", i, parts[i])
		}
	}
	ttl := time.Until(time.Unix(claims.Exp, 0))
	if header.Alg != "HS256" || claims.Sub != "42" || claims.Scope != "read write" || ttl < 9*time.Minute || ttl > 10*time.Minute {
		t.Errorf("header %+v, claims %+v (exp in %v); want HS256, sub 42, scope read write, exp in 10m", header, claims, ttl)
	}
}

// `webhookd api` serves the API on WEBHOOKD_API_ADDR with tokens `webhookd token` mints,
// and stops cleanly on SIGTERM.
func TestAPICommandServes(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	bed.AddWebhook(testbed.Webhook{Account: 7, Event: "TASK.CREATED", URL: "http://hooks.example/", Token: "never-shown"})
	addr := freeAddr(t)
	env := append(bedEnv(bed), apiSecret, "WEBHOOKD_API_ADDR="+addr)
	cmd := exec.Command(binary, "api")
	cmd.Env = append(cmd.Environ(), env...)
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tok, _, _ := webhookd(t, env, "token", "--account", "7")
	get := func(path, tok string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testbed.Eventually(t, 20*time.Second, "the API to answer", func() bool { code, _ := get("/openapi.json", ""); return code == 200 })
	code, body := get("/v1/webhooks", tok)
	if code != 200 || !strings.Contains(body, "hooks.example") || strings.Contains(body, "never-shown") {
		t.Errorf("GET /v1/webhooks = %d %s; want account 7's webhook without its token", code, body)
	}
	if code, _ := get("/v1/webhooks", ""); code != 401 {
		t.Errorf("without a token = %d, want 401", code)
	}
	if code, _ := get("/portal/", ""); code != 200 {
		t.Errorf("GET /portal/ = %d, want 200", code)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("api after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("api did not stop within 20s of SIGTERM")
	}
	if strings.Contains(logs.String(), "secret-of-the-cli-tests") {
		t.Errorf("the API secret is in the logs:\n%s", logs.String())
	}
}
