package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/httpapi"
	"github.com/weaseldb/weaseldb/internal/buildinfo"
	"github.com/weaseldb/weaseldb/internal/dirlock"
	"github.com/weaseldb/weaseldb/internal/durable"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/persist/s3log"
)

// backend is the opened persist.Log plus whatever runs beside it (the
// in-process fake S3 server).
type backend struct {
	log   persist.Log
	close func()
}

func (b *backend) Close() {
	b.log.Close()
	if b.close != nil {
		b.close()
	}
}

// openBackend opens the configured persistence backend.
func openBackend(ctx context.Context, cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) (*backend, error) {
	p := cfg.Persist
	switch p.Backend {
	case "disk":
		l, err := disk.Open(p.Dir, disk.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("persist disk %s: %w", p.Dir, err)
		}
		return &backend{log: l}, nil
	case "s3":
		l, err := s3log.Open(ctx, s3Config(cfg, logger, m))
		if err != nil {
			return nil, fmt.Errorf("persist s3: %w", err)
		}
		return &backend{log: l}, nil
	case "fakes3":
		return openFakeS3Backend(ctx, cfg, logger, m)
	}
	return nil, fmt.Errorf("persist.backend %q: want disk, s3 or fakes3", p.Backend)
}

// s3Config maps [persist] to the S3 log's configuration, with per-operation
// metrics registered on the server's registry.
func s3Config(cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) s3log.Config {
	p := cfg.Persist
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weaseldb_s3_operation_seconds",
		Help:    "S3 operations of the log backend, retries included, by operation.",
		Buckets: prometheus.ExponentialBuckets(1e-3, 2, 16),
	}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weaseldb_s3_operation_errors_total",
		Help: "S3 operations of the log backend that failed after retries, by operation.",
	}, []string{"op"})
	m.Registry.MustRegister(latency, errs)
	return s3log.Config{
		// A local copy of recent segments beside the status index: a
		// restart reads the conflict window from it, not one GET each.
		CacheDir:         filepath.Join(p.Dir, "s3cache"),
		Bucket:           p.Bucket,
		Prefix:           p.Prefix,
		Endpoint:         p.Endpoint,
		Region:           p.Region,
		UsePathStyle:     p.UsePathStyle,
		AccessKeyID:      p.AccessKeyID,
		SecretAccessKey:  p.SecretAccessKey,
		MaxInFlight:      cfg.Commit.MaxInFlight,
		ConnectTimeout:   p.ConnectTimeout.Duration,
		OperationTimeout: p.RequestTimeout.Duration,
		MaxConnsPerHost:  max(p.MaxConnections, cfg.Commit.MaxInFlight),
		IdleConnTimeout:  p.IdleConnTimeout.Duration,
		RetryMaxAttempts: p.MaxAttempts,
		EC2IMDS:          p.EC2IMDS,
		Logger:           logger,
		OnRequest: func(op s3log.Op, elapsed time.Duration, err error) {
			latency.WithLabelValues(op.String()).Observe(elapsed.Seconds())
			if err != nil {
				errs.WithLabelValues(op.String()).Inc()
			}
		},
	}
}

// fakeS3BodyBytesMax bounds one PUT to the in-process fake S3: more than
// any segment the pipeline writes (batch_max_bytes plus one maximal commit).
const fakeS3BodyBytesMax = 256 << 20

// openFakeS3Backend starts the fake S3 server on a netpoll server of its
// own, stored under --data-dir, and opens the real S3 backend against it
// through local connections (socketpairs): the real aws-sdk-go-v2 client, no
// TCP port.
func openFakeS3Backend(ctx context.Context, cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) (*backend, error) {
	p := cfg.Persist
	bucket := p.Bucket
	if bucket == "" {
		bucket = "weaseldb"
	}
	dir := filepath.Join(p.Dir, "fakes3")
	if err := durable.MkdirAll(dir, 0o755); err != nil { // a lost directory loses every object
		return nil, fmt.Errorf("persist fakes3: %w", err)
	}
	// The fake S3 lives in this process only: a second server on the same
	// directory would serve a second copy of the bucket, and both would
	// lead. The same exclusive lock as the disk backend's fences it off.
	lock, err := dirlock.Acquire(filepath.Join(dir, "LOCK"))
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("persist fakes3: data directory %s is in use by another server: %w", p.Dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("persist fakes3: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	fake, err := fakes3.New(fakes3.Options{Dir: dir, Buckets: []string{bucket}, ObjectBytesMax: fakeS3BodyBytesMax, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("persist fakes3 %s: %w", dir, err)
	}
	if d := p.FakeS3PutLatency.Duration; d > 0 {
		fake.Faults().Set(fakes3.Fault{Latency: d}, fakes3.OpPutObject)
	}
	router, err := netpoll.NewRouter([]netpoll.Route{{Path: "*", Handler: netpoll.HTTPHandler(fake), MaxBodyBytes: fakeS3BodyBytesMax}})
	if err != nil {
		return nil, fmt.Errorf("persist fakes3 routes: %w", err)
	}
	srv, err := netpoll.NewServer(netpoll.Config{Reactors: 1, DisableThreadPinning: true}, router)
	if err != nil {
		return nil, fmt.Errorf("persist fakes3 server: %w", err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	s3cfg := s3Config(cfg, logger, m)
	s3cfg.Bucket = bucket
	s3cfg.Endpoint = "http://fakes3.local"
	s3cfg.UsePathStyle = true
	s3cfg.Region = "us-east-1"
	s3cfg.AccessKeyID, s3cfg.SecretAccessKey = "fakes3", "fakes3"
	s3cfg.DialContext = func(context.Context, string, string) (net.Conn, error) {
		return srv.CreateLocalConnection()
	}
	l, err := s3log.Open(ctx, s3cfg)
	if err != nil {
		stop()
		return nil, fmt.Errorf("persist fakes3: %w", err)
	}
	logger.Info("in-process fake S3", "dir", dir, "bucket", bucket, "put_latency", p.FakeS3PutLatency.String())
	ok = true
	return &backend{log: l, close: func() { stop(); lock.Close() }}, nil
}

// runFakeS3 runs the standalone fake S3 server (weaseldb fakes3 ...).
func runFakeS3(args []string, stdout, stderr io.Writer) int {
	return fakes3.Main(args, buildinfo.Read(version, revision).Line("weaseldb fakes3"))
}
