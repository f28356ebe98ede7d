package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WEBHOOKD_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with defaults: %v", err)
	}
	if c.AMQPURL != "amqp://guest:guest@127.0.0.1:5672/" || c.MySQLDSN != "root@tcp(127.0.0.1:3306)/webhookd" ||
		c.Exchange != "events" || c.Queue != "webhookd" || c.QueueType != "quorum" || c.HTTPTimeout != 10*time.Second ||
		c.DisableAfter != 5 || c.Retention != 720*time.Hour || c.MaxEventBytes != 1<<20 || c.AdminAddr != "127.0.0.1:9090" ||
		c.ShutdownTimeout != 30*time.Second || c.AllowPrivateNetworks {
		t.Errorf("defaults = %+v", c)
	}
	if len(c.RetryDelays) != 3 || c.RetryDelays[0] != time.Minute || c.RetryDelays[1] != 5*time.Minute || c.RetryDelays[2] != 10*time.Minute {
		t.Errorf("RetryDelays = %v, want [1m 5m 10m]", c.RetryDelays)
	}
	if c.BreakerAfter != 10 || c.BreakerProbe != 30*time.Second || c.BreakerHold != 24*time.Hour || c.OutageHosts != 5 || c.OutageWindow != 10*time.Second {
		t.Errorf("protection defaults = %d, %v, %v, %d, %v; want 10, 30s, 24h, 5, 10s", c.BreakerAfter, c.BreakerProbe, c.BreakerHold, c.OutageHosts, c.OutageWindow)
	}
	if c.APIAddr != "127.0.0.1:8070" || c.APISecret != "" {
		t.Errorf("API defaults = %q, secret set %v; want 127.0.0.1:8070 and no secret", c.APIAddr, c.APISecret != "")
	}
	if c.PrefetchCount() != 8*c.Concurrency {
		t.Errorf("PrefetchCount = %d, want %d", c.PrefetchCount(), 8*c.Concurrency)
	}
	c.Concurrency = 10000
	if c.PrefetchCount() != 65535 {
		t.Errorf("PrefetchCount with 10000 slots = %d, want the protocol's most, 65535", c.PrefetchCount())
	}
}

func TestBadSettingsNamed(t *testing.T) {
	tests := []struct {
		key, value string
	}{
		{"WEBHOOKD_QUEUE_TYPE", "stream"},
		{"WEBHOOKD_RETRY_DELAYS", "0s"},
		{"WEBHOOKD_RETRY_DELAYS", "1m,abc"},
		{"WEBHOOKD_HTTP_TIMEOUT", "-1s"},
		{"WEBHOOKD_CONCURRENCY", "100000"},
		{"WEBHOOKD_CACHE_TTL", "11s"},
		{"WEBHOOKD_LOG_LEVEL", "loud"},
		{"WEBHOOKD_QUEUE", "amq.x"},
		{"WEBHOOKD_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/"},
		{"WEBHOOKD_SHUTDOWN_TIMEOUT", "0s"},
		{"WEBHOOKD_RETENTION", "0s"},
		{"WEBHOOKD_API_ADDR", "nocolon"},
		{"WEBHOOKD_BREAKER_AFTER", "-1"},
		{"WEBHOOKD_BREAKER_PROBE", "100ms"},
		{"WEBHOOKD_BREAKER_HOLD", "1s"},
		{"WEBHOOKD_OUTAGE_HOSTS", "-2"},
		{"WEBHOOKD_OUTAGE_WINDOW", "0s"},
		{"WEBHOOKD_API_SECRET", "31-bytes-is-one-byte-too-short!"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("Load() error = %v, want one naming %s", err, tt.key)
			}
		})
	}
}

func TestUsageListsEverySetting(t *testing.T) {
	var b strings.Builder
	if err := Usage(&b); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"AMQP_URL", "MYSQL_DSN", "EXCHANGE", "QUEUE", "RETRY_DELAYS", "HTTP_TIMEOUT",
		"CONCURRENCY", "PREFETCH", "DISABLE_AFTER", "RETENTION", "MAX_EVENT_BYTES", "QUEUE_TYPE",
		"ALLOW_PRIVATE_NETWORKS", "ADMIN_ADDR", "SHUTDOWN_TIMEOUT", "API_ADDR", "API_SECRET",
		"BREAKER_AFTER", "BREAKER_PROBE", "BREAKER_HOLD", "OUTAGE_HOSTS", "OUTAGE_WINDOW"} {
		if !strings.Contains(b.String(), "WEBHOOKD_"+key+" ") {
			t.Errorf("usage lacks WEBHOOKD_%s", key)
		}
	}
}

// The worker runs without an API secret; the API's commands name the missing variable, and a
// secret of 32 bytes is enough. No message repeats the secret.
func TestAPISecret(t *testing.T) {
	var c Config
	if err := c.RequireAPISecret(); err == nil || !strings.Contains(err.Error(), "WEBHOOKD_API_SECRET") {
		t.Errorf("RequireAPISecret without a secret = %v, want an error naming WEBHOOKD_API_SECRET", err)
	}
	short := "0123456789abcdef0123456789abcde"
	t.Setenv("WEBHOOKD_API_SECRET", short)
	if _, err := Load(); err == nil || strings.Contains(err.Error(), short) {
		t.Errorf("Load with a 31-byte secret = %v, want an error that does not repeat it", err)
	}
	t.Setenv("WEBHOOKD_API_SECRET", short+"f")
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with a 32-byte secret: %v", err)
	}
	if err := c.RequireAPISecret(); err != nil {
		t.Errorf("RequireAPISecret with a 32-byte secret: %v", err)
	}
}
