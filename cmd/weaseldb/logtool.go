package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/httpapi"
	"github.com/weaseldb/weaseldb/internal/logtool"
	"github.com/weaseldb/weaseldb/persist/s3log"
)

// runLog runs `weaseldb log ...` (see package logtool), opening S3 logs
// the way the server does.
func runLog(args []string, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return logtool.Main(args, stdout, stderr, logtool.Env{
		OpenS3: func(ctx context.Context, cfg config.Config) (*s3log.Log, func(), error) {
			m := httpapi.NewMetrics()
			if cfg.Persist.Backend == "fakes3" {
				b, err := openFakeS3Backend(ctx, cfg, logger, m)
				if err != nil {
					return nil, nil, err
				}
				l, ok := b.log.(*s3log.Log)
				if !ok {
					b.Close()
					return nil, nil, fmt.Errorf("persist fakes3: not an S3 log")
				}
				return l, b.close, nil
			}
			s3cfg := s3Config(cfg, logger, m)
			// The tools read S3's own bytes and leave no files behind:
			// no local segment cache (a server's may be in use).
			s3cfg.CacheDir = ""
			l, err := s3log.Open(ctx, s3cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("persist s3 bucket %q: %w", cfg.Persist.Bucket, err)
			}
			return l, nil, nil
		},
	})
}
