// Package config is WeaselDB's configuration: one TOML file, every field with
// a default (so no file is needed), overridden by command-line flags, and
// validated at start-up with errors that name the field and its allowed range.
//
// Use:
//
//	cfg := config.Default()
//	if err := cfg.LoadFile(path); err != nil { ... } // optional
//	... apply flags ...
//	if err := cfg.Validate(); err != nil { ... }     // every problem at once
//
// Durations are TOML strings in Go syntax ("5ms", "24h"); sizes are integers
// in bytes. Unknown keys are an error, so a typo never goes unnoticed.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/weaseldb/weaseldb/persist"
)

// Config is the whole configuration. Field comments give the unit and the
// default; Validate gives the allowed range.
type Config struct {
	Server    Server    `toml:"server"`
	Commit    Commit    `toml:"commit"`
	Persist   Persist   `toml:"persist"`
	Subscribe Subscribe `toml:"subscribe"`
	Retention Retention `toml:"retention"`
	Metrics   Metrics   `toml:"metrics"`
	Admin     Admin     `toml:"admin"`
}

// Server configures the client listener and the limits on requests.
type Server struct {
	Listen         string `toml:"listen"`          // host:port; default 127.0.0.1:8080
	Reactors       int    `toml:"reactors"`        // epoll reactors; 0 = one per CPU
	PinThreads     bool   `toml:"pin_threads"`     // pin each reactor to a CPU; default true
	MaxConnections int    `toml:"max_connections"` // beyond it: 503 and close; default 10000
	// MaxPipelinedCommits bounds the commits of one connection in the
	// pipeline at once (netpoll's MaxDetachedPerConn); at the bound the
	// server stops reading that connection until one is answered. Size it
	// to the pipelining the clients use: in flight per connection ≈ its
	// commit rate × commit latency (Little's law). Default 64.
	MaxPipelinedCommits int      `toml:"max_pipelined_commits"`
	ReadBufferBytes     int      `toml:"read_buffer_bytes"`   // per-reactor read buffer; default 64 KiB
	MaxHeaderBytes      int      `toml:"max_header_bytes"`    // request line + headers; default 16 KiB (431 beyond)
	IdleTimeout         Duration `toml:"idle_timeout"`        // keep-alive idle; default 120s
	HeaderTimeout       Duration `toml:"header_timeout"`      // whole head (with empty lines before it) must arrive within; default 10s
	BodyTimeout         Duration `toml:"body_timeout"`        // a request body must arrive within this ...; default 20s
	MinBodyRate         int      `toml:"min_body_rate"`       // ... plus 1s per this many bytes received (bytes/s); 408 and close beyond; default 500
	WriteStallTimeout   Duration `toml:"write_stall_timeout"` // peer not reading a stream; default 30s
	MaxKeyBytes         int      `toml:"max_key_bytes"`       // default 8 KiB
	MaxValueBytes       int      `toml:"max_value_bytes"`     // default 128 KiB
	MaxBodyBytes        int      `toml:"max_body_bytes"`      // default 16 MiB
	TotalBodyBytes      int64    `toml:"total_body_bytes"`    // request bodies being read, all connections; beyond: 503 before reading; default 1/8 of memory, 64 MiB..8 GiB
	MaxPreconditions    int      `toml:"max_preconditions"`   // per commit; default 10000
	MaxOperations       int      `toml:"max_operations"`      // per commit; default 10000
	TLSCertFile         string   `toml:"tls_cert_file"`       // with tls_key_file: serve HTTPS; default off
	TLSKeyFile          string   `toml:"tls_key_file"`        //
	AuthTokenFile       string   `toml:"auth_token_file"`     // bearer token required on every /v1/ route and /metrics; WEASELDB_AUTH_TOKEN also works; default off
	// AuthReads is kept so older files still load: reads always need the
	// token (API.md: a subscription streams the whole log), so only true,
	// the default, is accepted.
	AuthReads bool `toml:"auth_reads"`
	// AdvertiseURL is the base URL other servers and clients reach this one
	// at (written in the S3 lease; replicas redirect commits to it);
	// default derived from listen ("http://" or "https://" + listen, with
	// 127.0.0.1 for an unspecified host).
	AdvertiseURL string `toml:"advertise_url"`
}

// Commit configures the commit pipeline.
type Commit struct {
	BatchInterval          Duration `toml:"batch_interval"`           // longest a resolved txn waits for its segment while writes are in flight; default 2ms
	BatchMaxTransactions   int      `toml:"batch_max_transactions"`   // per segment; default 10000
	BatchMaxBytes          int      `toml:"batch_max_bytes"`          // segment size target; a larger single txn gets a segment of its own; default 8 MiB
	MaxInFlight            int      `toml:"max_in_flight"`            // segment writes outstanding; default 4 (disk) — raise for S3
	MaxQueued              int      `toml:"max_queued"`               // commits admitted but not answered; beyond: 503; default 100000
	ConflictWindow         Duration `toml:"conflict_window"`          // default 5s ...
	ConflictWindowVersions uint64   `toml:"conflict_window_versions"` // ... or 10M versions, whichever keeps more
	ConflictSetBytes       int64    `toml:"conflict_set_bytes"`       // memory bound of the conflict set; past it the oldest version advances early (older reads: too_old); default 1/8 of memory, 64 MiB..16 GiB
	StatusWindow           Duration `toml:"status_window"`            // default 24h ...
	StatusWindowVersions   uint64   `toml:"status_window_versions"`   // ... or 100M versions, whichever is less
	StatusMemoryIDs        int      `toml:"status_memory_ids"`        // request ids of the status window kept in memory (~64 B each); older ones are on disk in <persist.dir>/status; default 4M
	StatusRunIDs           int      `toml:"status_run_ids"`           // request ids per on-disk run of the status index (a crash restart re-reads about this many from the log); default 1M
}

// Persist chooses and configures the durable log.
type Persist struct {
	Backend         string   `toml:"backend"`           // disk | s3 | fakes3; default disk
	Dir             string   `toml:"dir"`               // disk log and fakes3 storage; default ./data
	Bucket          string   `toml:"bucket"`            // s3: required; fakes3: default "weaseldb"
	Prefix          string   `toml:"prefix"`            // key prefix inside the bucket; default "weaseldb"
	Endpoint        string   `toml:"endpoint"`          // s3: custom endpoint URL (S3-compatible servers); default AWS
	Region          string   `toml:"region"`            // default us-east-1
	UsePathStyle    bool     `toml:"use_path_style"`    // path-style addressing; default false (true for fakes3)
	AccessKeyID     string   `toml:"access_key_id"`     // static credentials; default: the standard AWS chain (environment, files, IMDS)
	SecretAccessKey string   `toml:"secret_access_key"` //
	ConnectTimeout  Duration `toml:"connect_timeout"`   // default 2s
	RequestTimeout  Duration `toml:"request_timeout"`   // per S3 operation, retries included; default 30s
	MaxConnections  int      `toml:"max_connections"`   // S3 HTTP connection pool; default 64
	IdleConnTimeout Duration `toml:"idle_conn_timeout"` // default 90s
	MaxAttempts     int      `toml:"max_attempts"`      // SDK retryer attempts per operation; default 5
	// EC2IMDS lets the AWS SDK ask EC2 instance metadata (credentials,
	// region) although endpoint is set; default false. Without an endpoint
	// the standard AWS chain, IMDS included, applies either way.
	EC2IMDS bool `toml:"ec2_imds"`
	// FakeS3PutLatency adds latency to every PUT of the in-process fake S3
	// (backend fakes3 only), to rehearse real S3 latencies; default 0.
	FakeS3PutLatency Duration `toml:"fakes3_put_latency"`
	// Replicas and failover (s3 backend; see docs/operations.md).
	LeaseTimeout        Duration `toml:"lease_timeout"`         // a replica takes over when the leader's lease has not changed for this long (its own clock); default 3s
	LeaseRenewInterval  Duration `toml:"lease_renew_interval"`  // how often the leader renews its lease; default 500ms
	ReplicaPollInterval Duration `toml:"replica_poll_interval"` // how often a replica lists new segments and reads the lease; default 200ms
	// TakeOver is set by --take-over only, never from a file (a file would
	// force a takeover at every restart): claim the log at start even while
	// another server holds a live lease.
	TakeOver bool `toml:"-"`
}

// Subscribe configures /v1/subscribe streams.
type Subscribe struct {
	BufferBytes        int      `toml:"buffer_bytes"`        // queued per subscriber before catch-up from the log; default 10 MiB
	TailBytes          int      `toml:"tail_bytes"`          // recent segments kept in memory for subscribers; default 64 MiB
	KeepAlive          Duration `toml:"keep_alive"`          // comment when silent; default 15s (API.md: never more)
	CheckpointInterval Duration `toml:"checkpoint_interval"` // checkpoint while idle; default 1s
	MaxSubscribers     int      `toml:"max_subscribers"`     // beyond: 429; default 10000
	// TotalBufferBytes bounds the buffers of all subscribers together; a new
	// subscriber is answered 503 when less than one buffer_bytes/2 is left.
	// Default: 1/16 of the machine's memory, 64 MiB..4 GiB.
	TotalBufferBytes int64 `toml:"total_buffer_bytes"`
}

// Retention configures truncation when no policy exists.
type Retention struct {
	DefaultKeepVersions uint64   `toml:"default_keep_versions"` // with no policy, keep the newest N versions; 0 keeps everything (default)
	TruncateInterval    Duration `toml:"truncate_interval"`     // how often truncation runs; default 10s
}

// Metrics configures GET /metrics.
type Metrics struct {
	Enabled bool `toml:"enabled"` // default true
}

// Admin configures the admin listener (pprof).
type Admin struct {
	Listen string `toml:"listen"` // host:port; empty = off (default). Loopback unless allow_remote
	Pprof  bool   `toml:"pprof"`  // serve /debug/pprof/ on it; default true
	// AllowRemote permits a non-loopback admin address. pprof exposes
	// internals, so the default refuses it.
	AllowRemote bool `toml:"allow_remote"`
}

// Duration is a time.Duration written in TOML as a Go duration string.
type Duration struct{ time.Duration }

// UnmarshalText parses "5ms", "24h", ...
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"5ms\", \"10s\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText prints the Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// D is shorthand for building a Duration.
func D(v time.Duration) Duration { return Duration{v} }

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Default returns the configuration used when no file and no flag says
// otherwise: a single server on 127.0.0.1:8080 persisting to ./data.
func Default() Config {
	return Config{
		Server: Server{
			Listen:              "127.0.0.1:8080",
			PinThreads:          true,
			MaxConnections:      10000,
			MaxPipelinedCommits: 64,
			ReadBufferBytes:     64 * kib,
			MaxHeaderBytes:      16 * kib,
			IdleTimeout:         D(120 * time.Second),
			HeaderTimeout:       D(10 * time.Second),
			BodyTimeout:         D(20 * time.Second),
			MinBodyRate:         500,
			WriteStallTimeout:   D(30 * time.Second),
			MaxKeyBytes:         8 * kib,
			MaxValueBytes:       128 * kib,
			MaxBodyBytes:        16 * mib,
			TotalBodyBytes:      clamp(MachineMemoryBytes()/8, 64*mib, 8*1024*mib),
			MaxPreconditions:    10000,
			MaxOperations:       10000,
			AuthReads:           true,
		},
		Commit: Commit{
			BatchInterval:          D(2 * time.Millisecond),
			BatchMaxTransactions:   10000,
			BatchMaxBytes:          8 * mib,
			MaxInFlight:            4,
			MaxQueued:              100000,
			ConflictWindow:         D(5 * time.Second),
			ConflictWindowVersions: 10_000_000,
			ConflictSetBytes:       clamp(MachineMemoryBytes()/8, 64*mib, 16*1024*mib),
			StatusWindow:           D(24 * time.Hour),
			StatusWindowVersions:   100_000_000,
			StatusMemoryIDs:        4 << 20,
			StatusRunIDs:           1 << 20,
		},
		Persist: Persist{
			Backend:             "disk",
			Dir:                 "./data",
			Prefix:              "weaseldb",
			Region:              "us-east-1",
			ConnectTimeout:      D(2 * time.Second),
			RequestTimeout:      D(30 * time.Second),
			MaxConnections:      64,
			IdleConnTimeout:     D(90 * time.Second),
			MaxAttempts:         5,
			LeaseTimeout:        D(3 * time.Second),
			LeaseRenewInterval:  D(500 * time.Millisecond),
			ReplicaPollInterval: D(200 * time.Millisecond),
		},
		Subscribe: Subscribe{
			BufferBytes:        10 * mib,
			TailBytes:          64 * mib,
			KeepAlive:          D(15 * time.Second),
			CheckpointInterval: D(time.Second),
			MaxSubscribers:     10000,
			TotalBufferBytes:   clamp(MachineMemoryBytes()/16, 64*mib, 4096*mib),
		},
		Retention: Retention{TruncateInterval: D(10 * time.Second)},
		Metrics:   Metrics{Enabled: true},
		Admin:     Admin{Pprof: true},
	}
}

// LoadFile overlays the TOML file at path on c. Keys it does not know are an
// error naming them.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return c.Load(b, path)
}

// Load overlays TOML text on c; name is used in error messages.
func (c *Config) Load(text []byte, name string) error {
	md, err := toml.NewDecoder(bytes.NewReader(text)).Decode(c)
	if err != nil {
		return fmt.Errorf("config %s: %w", name, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return fmt.Errorf("config %s: unknown key(s): %s", name, strings.Join(keys, ", "))
	}
	return nil
}

// Validate checks every field and reports every problem at once, each naming
// the field, its value and the allowed range.
func (c *Config) Validate() error {
	var v validator
	s := &c.Server
	v.nonEmpty("server.listen", s.Listen)
	v.hostPort("server.listen", s.Listen)
	if s.AdvertiseURL != "" {
		if u, err := url.Parse(s.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			v.add(fmt.Sprintf("server.advertise_url = %q: want http://host:port or https://host:port", s.AdvertiseURL))
		}
	}
	v.intRange("server.reactors", s.Reactors, 0, 1024)
	v.intRange("server.max_connections", s.MaxConnections, 1, 10_000_000)
	v.intRange("server.max_pipelined_commits", s.MaxPipelinedCommits, 1, 4096)
	v.intRange("server.read_buffer_bytes", s.ReadBufferBytes, 4*kib, 64*mib)
	v.intRange("server.max_header_bytes", s.MaxHeaderBytes, 1*kib, 1*mib)
	v.durRange("server.idle_timeout", s.IdleTimeout, time.Second, 24*time.Hour)
	v.durRange("server.header_timeout", s.HeaderTimeout, 100*time.Millisecond, time.Hour)
	v.durRange("server.write_stall_timeout", s.WriteStallTimeout, 100*time.Millisecond, time.Hour)
	v.durRange("server.body_timeout", s.BodyTimeout, 100*time.Millisecond, time.Hour)
	v.intRange("server.min_body_rate", s.MinBodyRate, 1, 1<<30)
	v.intRange("server.max_key_bytes", s.MaxKeyBytes, 1, 1*mib)
	v.intRange("server.max_value_bytes", s.MaxValueBytes, 0, 64*mib)
	v.intRange("server.max_body_bytes", s.MaxBodyBytes, 1*kib, 1024*mib)
	if s.TotalBodyBytes < 2*int64(s.MaxBodyBytes) || s.TotalBodyBytes > 1<<40 {
		v.add(fmt.Sprintf("server.total_body_bytes = %d: allowed range 2 × server.max_body_bytes (%d)..%d", s.TotalBodyBytes, 2*int64(s.MaxBodyBytes), int64(1)<<40))
	}
	v.intRange("server.max_preconditions", s.MaxPreconditions, 0, 10_000_000)
	v.intRange("server.max_operations", s.MaxOperations, 0, 10_000_000)
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		v.add("server.tls_cert_file and server.tls_key_file: set both or neither")
	}
	if !s.AuthReads {
		v.add("server.auth_reads = false: no longer supported; with a token set, reads need it too (remove the key)")
	}

	m := &c.Commit
	v.durRange("commit.batch_interval", m.BatchInterval, 0, time.Second)
	v.intRange("commit.batch_max_transactions", m.BatchMaxTransactions, 1, 10_000_000)
	v.intRange("commit.batch_max_bytes", m.BatchMaxBytes, 4*kib, 1024*mib)
	v.intRange("commit.max_in_flight", m.MaxInFlight, 1, 1024)
	v.intRange("commit.max_queued", m.MaxQueued, 1, 100_000_000)
	v.durRange("commit.conflict_window", m.ConflictWindow, 0, 24*time.Hour)
	v.uintRange("commit.conflict_window_versions", m.ConflictWindowVersions, 0, 1<<40)
	if m.ConflictSetBytes < 1*mib || m.ConflictSetBytes > 1<<40 {
		v.add(fmt.Sprintf("commit.conflict_set_bytes = %d: allowed range %d..%d", m.ConflictSetBytes, 1*mib, int64(1)<<40))
	}
	v.durRange("commit.status_window", m.StatusWindow, 0, 30*24*time.Hour)
	v.uintRange("commit.status_window_versions", m.StatusWindowVersions, 0, 1<<40)
	v.intRange("commit.status_memory_ids", m.StatusMemoryIDs, 1, 1<<32)
	v.intRange("commit.status_run_ids", m.StatusRunIDs, 1, 1<<28)

	p := &c.Persist
	switch p.Backend {
	case "disk", "fakes3":
		v.nonEmpty("persist.dir", p.Dir)
	case "s3":
		v.nonEmpty("persist.bucket", p.Bucket)
	default:
		v.add(fmt.Sprintf("persist.backend = %q: want one of disk, s3, fakes3", p.Backend))
	}
	if p.Bucket != "" {
		if err := persist.ValidBucketName(p.Bucket); err != nil {
			v.add("persist.bucket: " + err.Error())
		}
	}
	if p.Endpoint != "" && !strings.HasPrefix(p.Endpoint, "http://") && !strings.HasPrefix(p.Endpoint, "https://") {
		v.add(fmt.Sprintf("persist.endpoint = %q: must start with http:// or https://", p.Endpoint))
	}
	if strings.Contains(p.Prefix, "//") || strings.HasPrefix(p.Prefix, "/") || strings.HasSuffix(p.Prefix, "/") {
		v.add(fmt.Sprintf("persist.prefix = %q: no leading, trailing or doubled '/'", p.Prefix))
	}
	if (p.AccessKeyID == "") != (p.SecretAccessKey == "") {
		v.add("persist.access_key_id and persist.secret_access_key: set both or neither")
	}
	v.durRange("persist.connect_timeout", p.ConnectTimeout, 10*time.Millisecond, time.Minute)
	v.durRange("persist.request_timeout", p.RequestTimeout, 100*time.Millisecond, time.Hour)
	v.intRange("persist.max_connections", p.MaxConnections, 1, 100000)
	v.durRange("persist.idle_conn_timeout", p.IdleConnTimeout, time.Second, time.Hour)
	v.intRange("persist.max_attempts", p.MaxAttempts, 1, 100)
	v.durRange("persist.fakes3_put_latency", p.FakeS3PutLatency, 0, time.Minute)
	v.durRange("persist.lease_timeout", p.LeaseTimeout, 100*time.Millisecond, time.Hour)
	v.durRange("persist.lease_renew_interval", p.LeaseRenewInterval, 10*time.Millisecond, time.Hour)
	v.durRange("persist.replica_poll_interval", p.ReplicaPollInterval, 10*time.Millisecond, time.Hour)
	if p.LeaseRenewInterval.Duration*2 > p.LeaseTimeout.Duration {
		v.add(fmt.Sprintf("persist.lease_renew_interval = %s: must be at most half of persist.lease_timeout (%s), or a healthy leader looks dead",
			p.LeaseRenewInterval.Duration, p.LeaseTimeout.Duration))
	}

	b := &c.Subscribe
	v.intRange("subscribe.buffer_bytes", b.BufferBytes, 64*kib, 1024*mib)
	v.intRange("subscribe.tail_bytes", b.TailBytes, 1*mib, 64*1024*mib)
	v.durRange("subscribe.keep_alive", b.KeepAlive, 100*time.Millisecond, 15*time.Second)
	v.durRange("subscribe.checkpoint_interval", b.CheckpointInterval, 10*time.Millisecond, time.Second)
	v.intRange("subscribe.max_subscribers", b.MaxSubscribers, 1, 1_000_000)
	if b.TotalBufferBytes < int64(b.BufferBytes) || b.TotalBufferBytes > 1<<40 {
		v.add(fmt.Sprintf("subscribe.total_buffer_bytes = %d: allowed range subscribe.buffer_bytes (%d)..%d", b.TotalBufferBytes, b.BufferBytes, int64(1)<<40))
	}

	v.hostPort("admin.listen", c.Admin.Listen)
	v.durRange("retention.truncate_interval", c.Retention.TruncateInterval, 10*time.Millisecond, 24*time.Hour)
	return v.err()
}

type validator struct{ problems []string }

func (v *validator) add(p string) { v.problems = append(v.problems, p) }

func (v *validator) nonEmpty(field, s string) {
	if s == "" {
		v.add(field + " must not be empty")
	}
}

// hostPort checks a listen address: host:port with a numeric port (the
// host may be empty or a name).
func (v *validator) hostPort(field, s string) {
	if s == "" {
		return
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.add(fmt.Sprintf("%s = %q: want host:port (e.g. 127.0.0.1:8080)", field, s))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(fmt.Sprintf("%s = %q: port must be a number 0..65535", field, s))
	}
}

func (v *validator) intRange(field string, x, lo, hi int) {
	if x < lo || x > hi {
		v.add(fmt.Sprintf("%s = %d: allowed range %d..%d", field, x, lo, hi))
	}
}

func (v *validator) uintRange(field string, x, lo, hi uint64) {
	if x < lo || x > hi {
		v.add(fmt.Sprintf("%s = %d: allowed range %d..%d", field, x, lo, hi))
	}
}

func (v *validator) durRange(field string, d Duration, lo, hi time.Duration) {
	if d.Duration < lo || d.Duration > hi {
		v.add(fmt.Sprintf("%s = %s: allowed range %s..%s", field, d.Duration, lo, hi))
	}
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	if len(v.problems) == 1 { // one problem, one line
		return errors.New("invalid configuration: " + v.problems[0])
	}
	return errors.New("invalid configuration:\n  " + strings.Join(v.problems, "\n  "))
}

// TOML returns the configuration as a TOML document, with secrets masked
// when mask is true (for logs and --print-config).
func (c Config) TOML(mask bool) ([]byte, error) {
	if mask && c.Persist.SecretAccessKey != "" {
		c.Persist.SecretAccessKey = "********"
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// Advertise returns the URL other servers and clients reach this server at:
// server.advertise_url, else derived from the bound listen address (an
// unspecified host becomes 127.0.0.1; https when TLS is configured).
func (c Config) Advertise(bound net.Addr) string {
	if c.Server.AdvertiseURL != "" {
		return strings.TrimSuffix(c.Server.AdvertiseURL, "/")
	}
	scheme := "http://"
	if c.Server.TLSCertFile != "" {
		scheme = "https://"
	}
	hostport := c.Server.Listen
	if bound != nil {
		hostport = bound.String()
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return scheme + hostport
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return scheme + net.JoinHostPort(host, port)
}
