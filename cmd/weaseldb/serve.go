package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/failover"
	"github.com/weaseldb/weaseldb/httpapi"
	"github.com/weaseldb/weaseldb/internal/buildinfo"
	"github.com/weaseldb/weaseldb/internal/sdnotify"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/s3log"
	"github.com/weaseldb/weaseldb/tlsfront"
)

// shutdownGrace bounds a graceful shutdown: draining the pipeline, answering
// it and closing connections.
const shutdownGrace = 30 * time.Second

// serve runs the server until SIGTERM/SIGINT (exit 0) or a fatal condition
// such as being deposed by another leader (exit 1).
func serve(cfg config.Config, token authToken, lo logOptions, stderr io.Writer) int {
	logger := lo.newLogger(stderr)
	slog.SetDefault(logger)
	if token.warning != "" {
		logger.Warn(token.warning)
	}
	if err := run0(cfg, token.token, logger); err != nil {
		logger.Error("weaseldb stopped", "err", err)
		return 1
	}
	return 0
}

func run0(cfg config.Config, token string, logger *slog.Logger) error {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Every listener is bound before anything touches the log: a server
	// that cannot serve (its port is taken, a bad address) must not create
	// a data directory, write a segment or claim a shared log, which would
	// depose a healthy leader (issue 14.1). The configuration and the token
	// were checked before serve. Until the engine is open the API answers
	// 503.
	build := buildinfo.Read(version, revision)
	metrics := httpapi.NewMetrics()
	metrics.SetBuildInfo(build.Version, build.ShortRevision(), build.GoVersion)
	api := httpapi.New(cfg, nil, nil, httpapi.Options{
		AuthToken: token, Logger: logger, Metrics: metrics,
	})
	router, err := netpoll.NewRouter(api.Routes())
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	srv, err := netpoll.NewServer(netConfig(cfg), router)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	metrics.SetNetStats(srv.Stats)
	addr, front, err := listenClients(cfg, srv, logger)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	admin, err := startAdmin(cfg, logger)
	if err != nil {
		srv.Shutdown(context.Background())
		if front != nil {
			front.Close()
		}
		return err
	}
	closeListeners := func(grace context.Context) error {
		err := srv.Shutdown(grace)
		if front != nil {
			front.Close()
		}
		if admin != nil {
			admin.Close()
		}
		return err
	}

	backend, err := openBackend(ctx, cfg, logger, metrics)
	if err != nil {
		closeListeners(context.Background())
		return err
	}
	defer backend.Close()

	ecfg := engineConfig(cfg, logger, metrics)
	var node *failover.Node
	var eng *engine.Engine
	// Replicas and failover need a log other servers can reach: the s3
	// backend. The in-process fake S3 of --persist fakes3 lives and dies
	// with this server, so it runs alone like the disk backend.
	if shared, ok := backend.log.(*s3log.Log); ok && cfg.Persist.Backend == "s3" {
		// One leader id for every start attempt (see openEngine).
		if ecfg.LeaderID, err = engine.NewLeaderID(); err != nil {
			closeListeners(context.Background())
			return fmt.Errorf("leader id: %w", err)
		}
		node = failover.New(failover.Config{
			Engine:        ecfg,
			AdvertiseURL:  cfg.Advertise(addr),
			LeaseTimeout:  cfg.Persist.LeaseTimeout.Duration,
			RenewInterval: cfg.Persist.LeaseRenewInterval.Duration,
			PollInterval:  cfg.Persist.ReplicaPollInterval.Duration,
			TakeOver:      cfg.Persist.TakeOver,
			Logger:        logger,
			OnEngine:      api.SetEngine,
			OnLeader:      api.SetLeader,
		}, shared)
		metrics.SetFailover(failoverStatus(node))
		if err := node.Start(ctx); err != nil {
			closeListeners(context.Background())
			return fmt.Errorf("start on s3://%s/%s: %w", cfg.Persist.Bucket, cfg.Persist.Prefix, err)
		}
		eng = node.Engine()
	} else {
		eng, err = openEngine(ctx, ecfg, backend.log, logger)
		if err != nil {
			closeListeners(context.Background())
			return err
		}
		api.SetEngine(eng)
	}
	api.SetReady(true)
	// The settings that matter when reading a log, not the whole
	// configuration (--print-config shows that).
	attrs := []any{"listen", addr.String(), "advertise_url", cfg.Advertise(addr), "version", build.Version, "revision", build.ShortRevision(),
		"leader_id", eng.LeaderID(), "role", string(eng.Role()), "recovered_version", uint64(eng.Version()),
		"oldest_retained_version", uint64(eng.OldestRetained()),
		"startup_seconds", time.Since(start).Seconds(), "backend", cfg.Persist.Backend}
	switch cfg.Persist.Backend {
	case "s3":
		attrs = append(attrs, "bucket", cfg.Persist.Bucket, "prefix", cfg.Persist.Prefix, "endpoint", cfg.Persist.Endpoint)
	default:
		attrs = append(attrs, "data_dir", cfg.Persist.Dir)
	}
	attrs = append(attrs, "auth", token != "", "tls", cfg.Server.TLSCertFile != "", "metrics", cfg.Metrics.Enabled,
		"admin_listen", cfg.Admin.Listen)
	logger.Info("weaseldb ready", attrs...)
	notifySystemd(logger, sdnotify.Ready+"\nSTATUS=serving on "+addr.String())

	var runErr error
	if node != nil {
		// The node keeps the role (leader or replica) until the signal.
		eng = node.Run(ctx)
		logger.Info("shutting down", "reason", "signal", "role", roleOf(eng))
	} else {
		select {
		case <-ctx.Done():
			logger.Info("shutting down", "reason", "signal")
		case <-eng.Deposed():
			runErr = errors.New("deposed: another leader wrote the next segment; exiting so a supervisor can restart this server as a standby")
			logger.Error("deposed by another leader", "leader_id", eng.LeaderID())
		}
	}

	// Graceful: stop admitting, make the pipeline durable and answer it,
	// close streams, close connections.
	notifySystemd(logger, sdnotify.Stopping+"\nSTATUS=draining")
	api.SetReady(false)
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := eng.Close(grace); err != nil && runErr == nil {
		runErr = fmt.Errorf("drain pipeline: %w", err)
	} else if node != nil && runErr == nil {
		// Everything acknowledged is stored: hand the log over now.
		node.Release(grace)
	}
	api.CloseSubscribers(grace)
	if err := closeListeners(grace); err != nil && runErr == nil {
		runErr = fmt.Errorf("close connections: %w", err)
	}
	if runErr == nil {
		logger.Info("weaseldb stopped cleanly", "version", uint64(eng.Version()))
	}
	return runErr
}

// notifySystemd tells systemd (Type=notify, see contrib/systemd) about a
// state change; outside systemd it does nothing. A failure is only logged.
func notifySystemd(logger *slog.Logger, state string) {
	if err := sdnotify.Notify(state); err != nil {
		logger.Warn("systemd notification failed", "state", state, "err", err)
	}
}

func roleOf(eng *engine.Engine) string { return string(eng.Role()) }

// listenClients opens the client listener: plain TCP served by the reactors,
// or with [server] tls_cert_file a crypto/tls listener whose connections are
// bridged to the reactors (see package tlsfront: one extra copy per byte;
// for deployments without a TLS-terminating proxy).
func listenClients(cfg config.Config, srv *netpoll.Server, logger *slog.Logger) (net.Addr, *tlsfront.Front, error) {
	if cfg.Server.TLSCertFile == "" {
		addr, err := srv.Listen(cfg.Server.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("server.listen: %w", err)
		}
		return addr, nil, nil
	}
	tlsCfg, err := tlsfront.LoadConfig(cfg.Server.TLSCertFile, cfg.Server.TLSKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server.tls_cert_file: %w", err)
	}
	front, err := tlsfront.Listen(cfg.Server.Listen, tlsCfg, srv, tlsfront.Options{
		MaxConnections:   cfg.Server.MaxConnections,
		HandshakeTimeout: cfg.Server.HeaderTimeout.Duration,
		Logger:           logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("server.listen: %w", err)
	}
	return front.Addr(), front, nil
}

// openAttempts bounds how often start-up retries recovery after a transient
// backend error (an S3 timeout, a throttled list), with doubling pauses.
const (
	openAttempts     = 5
	openRetryInitial = time.Second
)

// openEngine recovers the log and claims leadership. Losing the claim to
// another leader and finding corruption are final; anything else (a
// backend that is slow or briefly unreachable) is retried a few times so a
// single timeout among thousands of segment reads does not fail the start.
func openEngine(ctx context.Context, cfg engine.Config, log persist.Log, logger *slog.Logger) (*engine.Engine, error) {
	// One leader id for every attempt: a claim that timed out and landed
	// later is then this process's own, not another leader's (see
	// engine.Config.LeaderID).
	if len(cfg.LeaderID) == 0 {
		id, err := engine.NewLeaderID()
		if err != nil {
			return nil, fmt.Errorf("open engine: %w", err)
		}
		cfg.LeaderID = id
	}
	pause := openRetryInitial
	for attempt := 1; ; attempt++ {
		eng, err := engine.Open(ctx, cfg, log)
		switch {
		case err == nil:
			return eng, nil
		case errors.Is(err, persist.ErrFenced):
			return nil, fmt.Errorf("another leader claimed the log first; staying down as a standby: %w", err)
		case errors.Is(err, persist.ErrCorruption), errors.Is(err, persist.ErrDamaged):
			return nil, fmt.Errorf("open engine: permanent error, not retried: %w", err)
		case attempt == openAttempts, ctx.Err() != nil:
			return nil, fmt.Errorf("open engine (attempt %d of %d): %w", attempt, openAttempts, err)
		}
		logger.Warn("recovery failed; retrying", "attempt", attempt, "of", openAttempts, "pause", pause.String(), "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, fmt.Errorf("open engine: %w", ctx.Err())
		}
		pause *= 2
	}
}

func engineConfig(cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) engine.Config {
	c := cfg.Commit
	return engine.Config{
		BatchInterval:          c.BatchInterval.Duration,
		BatchMaxTransactions:   c.BatchMaxTransactions,
		BatchMaxBytes:          c.BatchMaxBytes,
		MaxInFlight:            c.MaxInFlight,
		MaxQueued:              c.MaxQueued,
		ConflictWindow:         c.ConflictWindow.Duration,
		ConflictWindowVersions: c.ConflictWindowVersions,
		ConflictSetBytesMax:    c.ConflictSetBytes,
		StatusWindow:           c.StatusWindow.Duration,
		StatusWindowVersions:   c.StatusWindowVersions,
		StatusEntriesMax:       c.StatusMemoryIDs,
		StatusDir:              filepath.Join(cfg.Persist.Dir, "status"),
		StatusRunEntries:       c.StatusRunIDs,
		TailBytes:              cfg.Subscribe.TailBytes,
		DefaultKeepVersions:    cfg.Retention.DefaultKeepVersions,
		TruncateInterval:       cfg.Retention.TruncateInterval.Duration,
		Logger:                 logger,
		Observer:               m.Observer(),
	}
}

func netConfig(cfg config.Config) netpoll.Config {
	s := cfg.Server
	return netpoll.Config{
		Reactors:             s.Reactors,
		DisableThreadPinning: !s.PinThreads,
		MaxConnections:       s.MaxConnections,
		ReadBufferBytes:      s.ReadBufferBytes,
		MaxHeaderBytes:       s.MaxHeaderBytes,
		IdleTimeout:          s.IdleTimeout.Duration,
		HeaderTimeout:        s.HeaderTimeout.Duration,
		BodyTimeout:          s.BodyTimeout.Duration,
		MinBodyRate:          s.MinBodyRate,
		WriteStallTimeout:    s.WriteStallTimeout.Duration,
		MaxStreamQueueBytes:  httpapi.StreamQueueBytes(cfg),
		MaxStreamBytesTotal:  cfg.Subscribe.TotalBufferBytes,
		MaxBodyBytesTotal:    s.TotalBodyBytes,
		MaxDetachedPerConn:   s.MaxPipelinedCommits,
	}
}

// authToken is the bearer token the server requires (empty: none) and a
// warning to log once the logger exists.
type authToken struct {
	token, warning string
}

// loadAuthToken reads the bearer token from [server] auth_token_file or
// WEASELDB_AUTH_TOKEN; neither means authentication is off. An empty token
// from either source is refused: a deployment that meant to set a token and
// got an empty one must not run open (it is a configuration error, exit 2).
// A token file that group or others may read gets a warning.
func loadAuthToken(cfg config.Config) (authToken, error) {
	if f := cfg.Server.AuthTokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return authToken{}, fmt.Errorf("server.auth_token_file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return authToken{}, fmt.Errorf("server.auth_token_file %s: empty (remove the setting to run without authentication)", f)
		}
		at := authToken{token: token}
		if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o077 != 0 {
			at.warning = fmt.Sprintf("server.auth_token_file %s is readable by group or others (mode %04o); chmod 600 it", f, st.Mode().Perm())
		}
		return at, nil
	}
	if v, ok := os.LookupEnv("WEASELDB_AUTH_TOKEN"); ok {
		token := strings.TrimSpace(v)
		if token == "" {
			return authToken{}, errors.New("WEASELDB_AUTH_TOKEN is set but empty (unset it to run without authentication)")
		}
		return authToken{token: token}, nil
	}
	return authToken{}, nil
}

// startAdmin serves pprof on the admin listener, loopback only unless
// allowed otherwise.
func startAdmin(cfg config.Config, logger *slog.Logger) (*http.Server, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !cfg.Admin.AllowRemote {
		ln.Close()
		return nil, fmt.Errorf("admin.listen %s is not a loopback address; set [admin] allow_remote = true to expose pprof", cfg.Admin.Listen)
	}
	mux := http.NewServeMux()
	if cfg.Admin.Pprof {
		// Sample contention so the mutex and block profiles say something;
		// these rates cost little and only apply with the admin listener on.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int(time.Millisecond / 10))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener failed", "err", err)
		}
	}()
	logger.Info("admin listener", "addr", ln.Addr().String(), "pprof", cfg.Admin.Pprof)
	return srv, nil
}

// failoverStatus adapts the node's status to the metrics.
func failoverStatus(n *failover.Node) func() httpapi.FailoverStatus {
	return func() httpapi.FailoverStatus {
		st := n.Status()
		return httpapi.FailoverStatus{Role: st.Role.String(), LeaderID: st.LeaderID, LeaseAge: st.LeaseAge,
			LagVersions: st.LagVersions, LagSeconds: st.LagSeconds, Takeovers: st.Takeovers, StepDowns: st.StepDowns}
	}
}
