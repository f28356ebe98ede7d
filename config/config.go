// Package config holds webhookd's settings: environment variables with the prefix WEBHOOKD_,
// read with envconfig and checked before anything connects, so that a bad value stops the
// worker at start with a message naming the variable.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/kelseyhightower/envconfig"
)

// Prefix is the prefix of every setting's environment variable.
const Prefix = "WEBHOOKD"

// Config is every setting of the worker. Each field documents its default.
type Config struct {
	// AMQPURL is the RabbitMQ URL, or the URLs of several nodes comma-separated. Defaults to amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string `envconfig:"AMQP_URL" default:"amqp://guest:guest@127.0.0.1:5672/" desc:"RabbitMQ URL, or several comma-separated (tried in turn)"`
	// MySQLDSN is the go-sql-driver DSN of the database. Defaults to root@tcp(127.0.0.1:3306)/webhookd.
	MySQLDSN string `envconfig:"MYSQL_DSN" default:"root@tcp(127.0.0.1:3306)/webhookd" desc:"MySQL DSN; migrate creates the database"`
	// Exchange is the topic exchange events are published to. Defaults to events.
	Exchange string `envconfig:"EXCHANGE" default:"events" desc:"topic exchange of incoming events"`
	// Queue is the work queue; its retry and dead queues are named after it. Defaults to webhookd.
	Queue string `envconfig:"QUEUE" default:"webhookd" desc:"work queue; <queue>.retry.<delay> and <queue>.dead derive from it"`
	// QueueType is quorum or classic. Defaults to quorum.
	QueueType string `envconfig:"QUEUE_TYPE" default:"quorum" desc:"quorum or classic"`
	// RetryDelays is the retry ladder. Defaults to 1m,5m,10m.
	RetryDelays []time.Duration `envconfig:"RETRY_DELAYS" default:"1m,5m,10m" desc:"waits after failed attempts 1, 2, …"`
	// HTTPTimeout bounds one attempt. Defaults to 10s.
	HTTPTimeout time.Duration `envconfig:"HTTP_TIMEOUT" default:"10s" desc:"time limit of one delivery attempt"`
	// Concurrency is the number of attempts in flight at once. Defaults to 64.
	Concurrency int `envconfig:"CONCURRENCY" default:"64" desc:"attempts in flight at once"`
	// Prefetch is the number of unacknowledged messages the broker sends ahead; 0 means eight
	// times Concurrency (at most 65535). A message stays unacknowledged through two group
	// commits as well as its attempts, so the pipeline needs several messages per attempt
	// slot. Defaults to 0.
	Prefetch int `envconfig:"PREFETCH" default:"0" desc:"unacked messages the broker sends ahead; 0: 8×CONCURRENCY"`
	// DisableAfter is the number of failed deliveries in a row that disable a webhook; 0 never.
	// Defaults to 5.
	DisableAfter int `envconfig:"DISABLE_AFTER" default:"5" desc:"failed deliveries in a row that disable a webhook; 0: never"`
	// Retention is how long delivery logs and events are kept. Defaults to 720h.
	Retention time.Duration `envconfig:"RETENTION" default:"720h" desc:"age after which events, deliveries and attempts are purged"`
	// RepairAfter is how long overdue a pending delivery is re-driven by the repair sweep, which
	// runs every third of it. Defaults to 15m.
	RepairAfter time.Duration `envconfig:"REPAIR_AFTER" default:"15m" desc:"re-drive pending deliveries this long overdue (lost retry messages)"`
	// MaxEventBytes is the largest event body accepted. Defaults to 1 MiB.
	MaxEventBytes int `envconfig:"MAX_EVENT_BYTES" default:"1048576" desc:"largest accepted event body, bytes"`
	// AllowPrivateNetworks lifts the destination guard. Defaults to false.
	AllowPrivateNetworks bool `envconfig:"ALLOW_PRIVATE_NETWORKS" default:"false" desc:"allow loopback/private destinations (development)"`
	// AdminAddr is the address of /healthz, /readyz and /metrics; empty turns it off.
	// Defaults to 127.0.0.1:9090.
	AdminAddr string `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9090" desc:"admin HTTP address; empty: off"`
	// ShutdownTimeout bounds how long attempts in flight may finish after SIGTERM. Defaults to 30s.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s" desc:"time in-flight attempts get to finish on SIGINT/SIGTERM"`
	// CacheTTL is how long webhook lookups are cached; contract §2 requires changes within
	// 10s. Defaults to 5s.
	CacheTTL time.Duration `envconfig:"CACHE_TTL" default:"5s" desc:"webhook cache lifetime (at most 10s)"`
	// LogLevel is debug, info, warn or error. Defaults to info.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	// BreakerAfter is the failed attempts in a row to a webhook, of every worker together,
	// that open its circuit breaker; 0 never. Defaults to 10.
	BreakerAfter int `envconfig:"BREAKER_AFTER" default:"10" desc:"failed attempts in a row that open a webhook's circuit breaker; 0: never"`
	// BreakerProbe is how often an open breaker lets one attempt through. Defaults to 30s.
	BreakerProbe time.Duration `envconfig:"BREAKER_PROBE" default:"30s" desc:"an open breaker lets one probe through this often"`
	// BreakerHold is how long deliveries wait behind an open breaker before they fail with
	// reason "circuit open"; a breaker open that long disables its webhook. Defaults to 24h.
	BreakerHold time.Duration `envconfig:"BREAKER_HOLD" default:"24h" desc:"deliveries held behind an open breaker fail after this; a breaker open this long disables the webhook"`
	// OutageHosts is how many distinct hosts failing at the connection level, with none
	// answering for OutageWindow, the worker takes for its own network outage; 0 never.
	// Defaults to 5.
	OutageHosts int `envconfig:"OUTAGE_HOSTS" default:"5" desc:"distinct hosts failing at connection level, none answering, that make an outage of the worker's own; 0: never"`
	// OutageWindow is the window of OutageHosts. Defaults to 10s.
	OutageWindow time.Duration `envconfig:"OUTAGE_WINDOW" default:"10s" desc:"how long no destination may answer before connection failures are the worker's own outage"`
	// APIAddr is the address `webhookd api` serves the delivery API and the portal on.
	// Defaults to 127.0.0.1:8070.
	APIAddr string `envconfig:"API_ADDR" default:"127.0.0.1:8070" desc:"address of the delivery API and portal (webhookd api)"`
	// APISecret is the HS256 key of the API's tokens, shared with the monolith that mints
	// them. Required by `webhookd api` and `webhookd token`, at least 32 bytes. No default.
	APISecret string `envconfig:"API_SECRET" desc:"HS256 key of API tokens, at least 32 bytes; required by api and token"`
}

// Load reads the settings from the environment and validates them.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return Config{}, fmt.Errorf("read settings: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Usage writes every setting with its default and meaning.
func Usage(w io.Writer) error {
	var c Config
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if err := envconfig.Usagef(Prefix, &c, tw, "{{range .}}  {{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"); err != nil {
		return err
	}
	return tw.Flush()
}

// Validate checks every setting and names the variable of the first bad one.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
	for _, raw := range strings.Split(c.AMQPURL, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			bad("AMQP_URL", "want amqp:// or amqps:// URLs, comma-separated, got %q", raw)
		}
	}
	if cfg, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
		bad("MYSQL_DSN", "%v", err)
	} else if cfg.DBName == "" {
		bad("MYSQL_DSN", "names no database")
	}
	if c.Exchange == "" {
		bad("EXCHANGE", "must not be empty")
	}
	if c.Queue == "" || strings.HasPrefix(c.Queue, "amq.") {
		bad("QUEUE", "must be non-empty and not start with amq., got %q", c.Queue)
	}
	if c.QueueType != "quorum" && c.QueueType != "classic" {
		bad("QUEUE_TYPE", "want quorum or classic, got %q", c.QueueType)
	}
	if len(c.RetryDelays) == 0 {
		bad("RETRY_DELAYS", "needs at least one delay")
	}
	for _, d := range c.RetryDelays {
		if d <= 0 {
			bad("RETRY_DELAYS", "delays must be positive, got %v", d)
		}
	}
	if c.HTTPTimeout <= 0 {
		bad("HTTP_TIMEOUT", "must be positive, got %v", c.HTTPTimeout)
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		bad("CONCURRENCY", "want 1 to 10000, got %d", c.Concurrency)
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		bad("PREFETCH", "want 0 to 65535, got %d", c.Prefetch)
	}
	if c.DisableAfter < 0 {
		bad("DISABLE_AFTER", "must not be negative, got %d", c.DisableAfter)
	}
	if c.Retention <= 0 {
		bad("RETENTION", "must be positive, got %v", c.Retention)
	}
	if c.MaxEventBytes < 64 {
		bad("MAX_EVENT_BYTES", "must be at least 64, got %d", c.MaxEventBytes)
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("ADMIN_ADDR", "%v", err)
		}
	}
	if c.RepairAfter <= 0 {
		bad("REPAIR_AFTER", "must be positive, got %v", c.RepairAfter)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive, got %v", c.ShutdownTimeout)
	}
	if c.CacheTTL <= 0 || c.CacheTTL > 10*time.Second {
		bad("CACHE_TTL", "want more than 0 and at most 10s, got %v", c.CacheTTL)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.BreakerAfter < 0 {
		bad("BREAKER_AFTER", "must not be negative, got %d", c.BreakerAfter)
	}
	if c.BreakerProbe < time.Second {
		bad("BREAKER_PROBE", "must be at least 1s, got %v", c.BreakerProbe)
	}
	if c.BreakerHold < c.BreakerProbe {
		bad("BREAKER_HOLD", "must be at least BREAKER_PROBE (%v), got %v", c.BreakerProbe, c.BreakerHold)
	}
	if c.OutageHosts < 0 {
		bad("OUTAGE_HOSTS", "must not be negative, got %d", c.OutageHosts)
	}
	if c.OutageWindow < time.Second {
		bad("OUTAGE_WINDOW", "must be at least 1s, got %v", c.OutageWindow)
	}
	if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
		bad("API_ADDR", "%v", err)
	}
	// The secret itself never appears in a message.
	if c.APISecret != "" && len(c.APISecret) < MinAPISecretBytes {
		bad("API_SECRET", "must be at least %d bytes, got %d", MinAPISecretBytes, len(c.APISecret))
	}
	return errors.Join(errs...)
}

// MinAPISecretBytes is the shortest WEBHOOKD_API_SECRET accepted: an HS256 key shorter than
// the hash's 32 bytes weakens it (RFC 7518 §3.2).
const MinAPISecretBytes = 32

// RequireAPISecret reports an error naming WEBHOOKD_API_SECRET unless it is set: the commands
// that sign or check API tokens need it, the worker does not.
func (c Config) RequireAPISecret() error {
	if c.APISecret == "" {
		return fmt.Errorf("%s_API_SECRET: must be set (at least %d bytes) for the API and its tokens", Prefix, MinAPISecretBytes)
	}
	return nil
}

// prefetchPerSlot is the default prefetch per attempt slot. Draining a backlog (./bench
// profile, 128 slots), 2 per slot gave 6,900 deliveries/s, 4 gave 7,500, 8 gave 8,100 and 16
// gave 8,400: the group commits, not the attempts, hold most messages.
const prefetchPerSlot = 8

// PrefetchCount is the broker prefetch to ask for.
func (c Config) PrefetchCount() int {
	if c.Prefetch == 0 {
		return min(prefetchPerSlot*c.Concurrency, 65535)
	}
	return c.Prefetch
}
