package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"weaseldb/config"
	"weaseldb/httpapi"
	"weaseldb/persist"
	"weaseldb/persist/disk"
)

// backend is the opened persist.Log plus whatever runs beside it (the
// in-process fake S3 server).
type backend struct {
	log     persist.Log
	closers []io.Closer
}

func (b *backend) Close() {
	b.log.Close()
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i].Close()
	}
}

// openBackend opens the configured persistence backend.
func openBackend(ctx context.Context, cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) (*backend, error) {
	switch cfg.Persist.Backend {
	case "disk":
		l, err := disk.Open(cfg.Persist.Dir, disk.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("persist disk %s: %w", cfg.Persist.Dir, err)
		}
		return &backend{log: l}, nil
	default:
		return openS3Backend(ctx, cfg, logger, m)
	}
}

// runFakeS3 runs the standalone fake S3 server.
func runFakeS3(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "weaseldb fakes3: not wired yet")
	return 1
}

func openS3Backend(ctx context.Context, cfg config.Config, logger *slog.Logger, m *httpapi.Metrics) (*backend, error) {
	return nil, fmt.Errorf("persist backend %q: not wired yet", cfg.Persist.Backend)
}
