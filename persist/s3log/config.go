package s3log

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Config configures an S3 Log. Zero values select the defaults named on
// each field; Open reports every invalid field at once.
type Config struct {
	// Bucket holds the log. Required.
	Bucket string
	// CacheDir, when set, keeps a local copy of recent segments (the ones
	// written and read) there, so that a restart reads the conflict
	// window's segments locally instead of one GET each (see cache.go).
	// CacheBytes bounds it; default 256 MiB.
	CacheDir   string
	CacheBytes int64
	// Prefix is prepended to every key: segments live at
	// "<Prefix>/log/<First as 20 digits>", policies at
	// "<Prefix>/retention.json". Empty puts them at the bucket's root.
	Prefix string
	// Endpoint is the service URL, e.g. "http://127.0.0.1:9000" for an
	// S3-compatible server. Empty selects AWS's endpoint for Region.
	Endpoint string
	// Region signs requests. Empty: the standard AWS chain (AWS_REGION,
	// config files), else "us-east-1".
	Region string
	// UsePathStyle addresses "<endpoint>/<bucket>/<key>" instead of
	// "<bucket>.<endpoint>/<key>"; most S3-compatible servers need it.
	UsePathStyle bool

	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials. When AccessKeyID is empty the standard AWS chain is used
	// (environment, shared files, SSO, web identity, instance role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string

	// MaxInFlight bounds concurrent segment PUTs (and concurrent GETs of
	// one Recover or ReadFrom). At S3 latencies of tens of milliseconds
	// throughput is about MaxInFlight / latency segments per second. Zero
	// selects 16.
	MaxInFlight int

	// ConnectTimeout bounds a TCP (and TLS) connection set-up. Zero: 5s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an answer's headers after
	// the request was sent. Zero: 30s.
	ResponseHeaderTimeout time.Duration
	// OperationTimeout bounds one Log operation against S3 including every
	// retry. Zero: 2m.
	OperationTimeout time.Duration

	// MaxConnsPerHost bounds open connections (in use or idle). Must be at
	// least MaxInFlight. Zero: MaxInFlight + 8 (room for reads).
	MaxConnsPerHost int
	// MaxIdleConns bounds idle connections kept for reuse. Zero: MaxConnsPerHost.
	MaxIdleConns int
	// IdleConnTimeout closes connections idle this long. Zero: 90s.
	IdleConnTimeout time.Duration

	// RetryMaxAttempts is the attempts per request (first try included)
	// of the SDK's standard retryer: exponential backoff with full jitter,
	// retrying 5xx, SlowDown/throttling, timeouts, connection errors and
	// 409 ConditionalRequestConflict. Zero: 8.
	RetryMaxAttempts int
	// RetryMaxBackoff caps one backoff delay. Zero: 5s.
	RetryMaxBackoff time.Duration

	// DialContext replaces the TCP dialer, e.g. with an in-process
	// connection to a fake S3. Nil dials TCP.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS configures https endpoints (roots, client certificates). Nil
	// uses the system roots (and AWS_CA_BUNDLE when set).
	TLS *tls.Config

	// OnRequest, when set, is called after every S3 operation the Log makes
	// (retries included in elapsed), from the goroutine that made it. For
	// metrics; it must not block.
	OnRequest func(op Op, elapsed time.Duration, err error)

	// EC2IMDS lets the AWS SDK ask EC2 instance metadata (for credentials
	// and region) although Endpoint is set. With an Endpoint (an
	// S3-compatible server, a fake) the default is not to: off EC2 the
	// probe only waits for timeouts and logs warnings. Without an Endpoint
	// the standard AWS chain, IMDS included, applies either way.
	EC2IMDS bool

	// Logger receives recovery reports (discarded segments), ambiguous
	// write resolutions and the AWS SDK's own log lines (at Debug for its
	// debug classification, else Warn). Nil: slog.Default().
	Logger *slog.Logger
}

const (
	maxInFlightDefault           = 16
	connectTimeoutDefault        = 5 * time.Second
	responseHeaderTimeoutDefault = 30 * time.Second
	operationTimeoutDefault      = 2 * time.Minute
	idleConnTimeoutDefault       = 90 * time.Second
	retryMaxAttemptsDefault      = 8
	retryMaxBackoffDefault       = 5 * time.Second
	connsForReads                = 8
)

func (c *Config) ensureDefaults() {
	if c.CacheBytes == 0 {
		c.CacheBytes = 256 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = maxInFlightDefault
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = connectTimeoutDefault
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = responseHeaderTimeoutDefault
	}
	if c.OperationTimeout == 0 {
		c.OperationTimeout = operationTimeoutDefault
	}
	if c.MaxConnsPerHost == 0 {
		c.MaxConnsPerHost = c.MaxInFlight + connsForReads
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = c.MaxConnsPerHost
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = idleConnTimeoutDefault
	}
	if c.RetryMaxAttempts == 0 {
		c.RetryMaxAttempts = retryMaxAttemptsDefault
	}
	if c.RetryMaxBackoff == 0 {
		c.RetryMaxBackoff = retryMaxBackoffDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("max in flight %d: must be positive", c.MaxInFlight))
	}
	if c.MaxConnsPerHost < c.MaxInFlight {
		errs = append(errs, fmt.Errorf("max conns per host %d < max in flight %d: PUTs would queue for connections", c.MaxConnsPerHost, c.MaxInFlight))
	}
	if c.RetryMaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("retry max attempts %d: must be at least 1", c.RetryMaxAttempts))
	}
	for name, d := range map[string]time.Duration{"connect timeout": c.ConnectTimeout,
		"response header timeout": c.ResponseHeaderTimeout, "operation timeout": c.OperationTimeout,
		"idle conn timeout": c.IdleConnTimeout, "retry max backoff": c.RetryMaxBackoff} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", name, d))
		}
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		errs = append(errs, fmt.Errorf("endpoint %q: must start with http:// or https://", c.Endpoint))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("s3log: config: %w", err)
	}
	return nil
}

// keyPrefix returns "<Prefix>/" or "" for an empty prefix.
func (c *Config) keyPrefix() string {
	p := strings.Trim(c.Prefix, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}
