// Command weaseldb runs the WeaselDB server, or with the subcommand "fakes3"
// a standalone fake S3 server for development and tests. See usage below.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/internal/buildinfo"
)

// version and revision are set at build time with -ldflags "-X
// main.version=... -X main.revision=..." (the Makefile sets revision to
// `git rev-parse HEAD`; the toolchain's own VCS stamp wins when present).
var (
	version  = "0.1.0-dev"
	revision = ""
)

const usage = `NAME
    weaseldb - a transaction log with optimistic concurrency control

SYNOPSIS
    weaseldb [--config FILE] [--listen ADDR] [--data-dir DIR]
             [--persist disk|s3|fakes3] [--admin-listen ADDR]
             [--advertise-url URL] [--take-over]
             [--log-level debug|info|warn|error] [--log-format json|text]
    weaseldb --print-config [flags...]
    weaseldb --version
    weaseldb fakes3 [--listen ADDR] [--dir DIR] ...   (see: weaseldb fakes3 --help)
    weaseldb log stat|verify|dump|copy ...           (see: weaseldb log --help)
    weaseldb backup --url URL --to DIR ...           (see: weaseldb backup --help)

DESCRIPTION
    Serves the HTTP/JSON API of WeaselDB (POST /v1/commit, GET /v1/version,
    GET /v1/status, GET /v1/subscribe, /v1/retention/, /metrics, /healthz,
    /readyz). Commits are checked against a conflict set, assigned the next
    version, made durable in the configured backend and only then answered.

    With no flags at all the server listens on 127.0.0.1:8080 and persists
    to ./data on local disk.

OPTIONS
    --config FILE        TOML configuration file; every field has a default
                         (print them with --print-config). Unknown keys are
                         an error. Flags below override the file.
    --listen ADDR        client listener, host:port (default 127.0.0.1:8080)
    --data-dir DIR       directory for the disk log and the fakes3 store
                         (default ./data), and for every backend the
                         status index: request ids of the status window
                         beyond [commit] status_memory_ids live in DIR/status
    --persist BACKEND    disk (default): segments fsynced to --data-dir;
                         s3: an S3 bucket ([persist] bucket, prefix, endpoint,
                         region; credentials from the standard AWS chain);
                         fakes3: an in-process fake S3 stored in --data-dir,
                         reached through the real S3 client (development).
                         disk and fakes3 lock --data-dir: a second server on
                         it exits at once, naming the holder's pid.
    --admin-listen ADDR  admin listener with /debug/pprof/ (default off;
                         loopback only unless [admin] allow_remote = true)
    --advertise-url URL  where other servers and clients reach this one
                         ([server] advertise_url; default http://, or
                         https:// with TLS, + the bound --listen address,
                         127.0.0.1 for an unspecified host). With the s3
                         backend the leader writes it in its lease and
                         replicas redirect commits there.
    --take-over          s3 backend: claim the log at start even while another
                         server leads it (a planned switchover): that leader
                         is deposed at its next write or lease renewal and
                         becomes a replica. Exits 1 if another server claims
                         first. Without it a server that finds a live lease
                         starts as a replica.
    --log-level LEVEL    least severe log level written: debug, info (default),
                         warn or error
    --log-format FORMAT  json (default: one JSON object per line) or text
                         (key=value lines)
    --print-config       print the effective configuration as TOML and exit
    --version            print the version, VCS revision and Go version, and
                         exit
    -h, --help           this text

LIMITS (defaults; [server] section)
    key 8 KiB, value 128 KiB, request body 16 MiB, 10,000 preconditions and
    10,000 operations per commit (413 beyond); request head 16 KiB (431);
    10,000 connections (503 beyond); header timeout 10s (empty lines
    before a request count); a request body must arrive within 20s plus 1s
    per 500 bytes (body_timeout, min_body_rate; 408 and close beyond); idle
    timeout 120s; a stream whose peer stops reading is closed after 30s;
    10 MiB buffered per subscriber before it is caught up from the log, and
    all subscribers together at most [subscribe] total_buffer_bytes (1/16
    of the machine's memory; a new subscriber gets 503 beyond). 64 commits
    of one connection in the pipeline at once (max_pipelined_commits;
    beyond it the connection is not read until one is answered). Size it by
    Little's law: a connection that pipelines commits needs its commit rate
    times the commit latency, e.g. 2,000 commits/s per connection against
    S3 PUTs of 20 ms plus the 2 ms batch interval needs 2,000 x 0.03 s = 60.
    Each commit in flight holds its body's memory (64 KiB or more) until it
    is answered, and a connection keeps that many for reuse.

MEMORY BOUNDS (defaults sized to the machine's memory, or the cgroup limit)
    total_body_bytes      [server] request bodies being read at once, all
                          connections (1/8 of memory, 64 MiB..8 GiB); a body
                          that does not fit gets 503 before it is read
    conflict_set_bytes    [commit] conflict set (1/8 of memory, 64 MiB..16
                          GiB); past it the oldest version advances early
                          and older reads get 409 too_old
    total_buffer_bytes    [subscribe] all subscriber buffers (1/16)
    See docs/operations.md, "Memory budget"; --print-config shows the values.

REPLICAS AND FAILOVER (s3 backend; docs/operations.md)
    Several servers may share one bucket and prefix: one leads and renews a
    lease object (<prefix>/leader); the others are replicas that follow the
    log, serve /v1/version, durable /v1/subscribe and retention reads, and
    answer commits, status queries and retention changes 307 to the leader
    (/readyz 503). When the lease has not changed for [persist]
    lease_timeout (default 3s, by the replica's own clock) a replica takes
    over (at once when the leader released it on SIGTERM). A leader that
    loses the log becomes a replica; it does not exit.
    [persist] lease_renew_interval (default 500ms, at most half the
    timeout) and replica_poll_interval (default 200ms) tune the rest.

SIGNALS
    SIGTERM, SIGINT  stop accepting, make everything in the pipeline durable,
                     answer it, close streams, exit 0.

EXIT STATUS
    0 clean shutdown; 1 runtime failure (a listener that cannot be bound,
    the log unreachable, or, on the disk backend, being deposed by another
    leader); 2 bad usage or configuration. Nothing is written before every
    listener is bound.

ENVIRONMENT
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_PROFILE, ...
                         the standard AWS chain, for --persist s3
    WEASELDB_AUTH_TOKEN  bearer token required on every /v1/ route and
                         /metrics, reads too (/healthz and /readyz stay
                         open); set but empty is refused (exit 2). [server]
                         auth_token_file takes precedence; a token file
                         readable by group or others is warned about.
    NOTIFY_SOCKET        set by systemd for Type=notify (see
                         contrib/systemd/weaseldb.service): READY=1 is sent
                         once the server serves, STOPPING=1 when it drains.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "fakes3" {
		return runFakeS3(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "log" {
		return runLog(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "backup" {
		return runBackup(args[1:], stdout, stderr)
	}
	cfg, action, logOpts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "weaseldb: %v\n", err)
		return 2
	}
	switch action {
	case actionVersion:
		fmt.Fprintln(stdout, buildinfo.Read(version, revision).Line("weaseldb"))
		return 0
	case actionPrintConfig:
		text, err := cfg.TOML(true)
		if err != nil {
			fmt.Fprintf(stderr, "weaseldb: %v\n", err)
			return 1
		}
		stdout.Write(text)
		return 0
	}
	token, err := loadAuthToken(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "weaseldb: %v\n", err)
		return 2
	}
	return serve(cfg, token, logOpts, stderr)
}

type action int

const (
	actionServe action = iota
	actionVersion
	actionPrintConfig
)

// logOptions say how the server logs (--log-level, --log-format).
type logOptions struct {
	level slog.Level
	text  bool
}

// newLogger builds the server's logger on w.
func (o logOptions) newLogger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.level}
	if o.text {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

// parseLogOptions checks --log-level and --log-format.
func parseLogOptions(level, format string) (logOptions, error) {
	var o logOptions
	switch level {
	case "debug":
		o.level = slog.LevelDebug
	case "info":
		o.level = slog.LevelInfo
	case "warn":
		o.level = slog.LevelWarn
	case "error":
		o.level = slog.LevelError
	default:
		return o, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "text":
		o.text = true
	default:
		return o, fmt.Errorf("--log-format %q: want json or text", format)
	}
	return o, nil
}

// parseFlags builds the effective configuration: defaults, then the file,
// then flags, then validation.
func parseFlags(args []string, stderr io.Writer) (config.Config, action, logOptions, error) {
	fs := flag.NewFlagSet("weaseldb", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	configFile := fs.String("config", "", "")
	listen := fs.String("listen", "", "")
	dataDir := fs.String("data-dir", "", "")
	backend := fs.String("persist", "", "")
	adminListen := fs.String("admin-listen", "", "")
	advertiseURL := fs.String("advertise-url", "", "")
	takeOver := fs.Bool("take-over", false, "")
	printConfig := fs.Bool("print-config", false, "")
	showVersion := fs.Bool("version", false, "")
	logLevel := fs.String("log-level", "info", "")
	logFormat := fs.String("log-format", "json", "")
	var lo logOptions
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, actionServe, lo, err
		}
		return config.Config{}, actionServe, lo, fmt.Errorf("%w (see weaseldb --help)", err)
	}
	if fs.NArg() > 0 {
		return config.Config{}, actionServe, lo, fmt.Errorf("unexpected argument %q (see weaseldb --help)", fs.Arg(0))
	}
	if *showVersion {
		return config.Config{}, actionVersion, lo, nil
	}
	lo, err := parseLogOptions(*logLevel, *logFormat)
	if err != nil {
		return config.Config{}, actionServe, lo, err
	}
	cfg := config.Default()
	if *configFile != "" {
		if err := cfg.LoadFile(*configFile); err != nil {
			return cfg, actionServe, lo, err
		}
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	if *dataDir != "" {
		cfg.Persist.Dir = *dataDir
	}
	if *backend != "" {
		cfg.Persist.Backend = *backend
	}
	if *advertiseURL != "" {
		cfg.Server.AdvertiseURL = *advertiseURL
	}
	cfg.Persist.TakeOver = *takeOver
	if *adminListen != "" {
		cfg.Admin.Listen = *adminListen
	}
	if err := cfg.Validate(); err != nil {
		return cfg, actionServe, lo, err
	}
	if *printConfig {
		return cfg, actionPrintConfig, lo, nil
	}
	return cfg, actionServe, lo, nil
}
