package logtool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/persist/s3log"
)

const copyHelp = `NAME
    weaseldb log copy - copy a log to another backend

SYNOPSIS
    weaseldb log copy [--config FILE] [--data-dir DIR] [--persist BACKEND]
                      (--to-dir DIR | --to-s3 s3://BUCKET/PREFIX | --to-config FILE)

DESCRIPTION
    Copies the log that recovery would keep (every segment, byte for byte,
    so versions, request ids, timestamps and leader terms stay as they are)
    and the retention policies to an empty target: disk to S3, S3 to disk,
    or disk to disk. Every segment is checked (checksum and every
    transaction) before it is written, and the target is read back and
    compared at the end. A server can then start on the target with the
    same versions.

    It refuses a source with a problem (see 'weaseldb log verify'), a disk
    source that a server holds (use 'weaseldb backup' for a live server), a
    target that already holds a log (log files, segment objects or
    policies), and a target directory a server holds. A copy that fails half
    way leaves a partial target: remove it before trying again.

    --to-dir DIR          target: a disk log directory (created if missing)
    --to-s3 s3://B/P      target: bucket B, prefix P; endpoint, region and
                          credentials from --to-config, else from the
                          source's [persist] settings
    --to-config FILE      target: the [persist] section of FILE

EXIT STATUS
    0 copied and verified; 1 refused or failed; 2 bad usage.
`

// copyInFlight bounds the segments being written at once (the disk log
// groups them into one fdatasync; S3 PUTs overlap).
const copyInFlight = 16

func runCopy(inv *invocation) int {
	fs := inv.flags(false)
	toDir := fs.String("to-dir", "", "")
	toS3 := fs.String("to-s3", "", "")
	toConfig := fs.String("to-config", "", "")
	if code := inv.parse(copyHelp); code >= 0 {
		return code
	}
	target, err := targetConfig(inv.cfg, *toDir, *toS3, *toConfig)
	if err != nil {
		return usageError(inv, err)
	}
	src, v, err := inv.load()
	if err != nil {
		return inv.fail("%v", err)
	}
	defer src.close()
	if v.lockHolder != "" {
		return inv.fail("refusing to copy %s: %s holds it and is writing to it (copy a live server with 'weaseldb backup')", v.location, v.lockHolder)
	}
	if len(v.problems) > 0 {
		return inv.fail("refusing to copy %s: %s (see weaseldb log verify)", v.location, where(v.problems[0]))
	}
	if len(v.run) == 0 {
		return inv.fail("refusing to copy %s: it holds no log", v.location)
	}
	dst, dstWhere, err := inv.openTarget(target)
	if err != nil {
		return inv.fail("%v", err)
	}
	if err := copySegments(inv.ctx, src, v, dst); err != nil {
		dst.Close()
		return inv.fail("copy to %s failed, which now holds a partial log (remove it before trying again): %v", dstWhere, err)
	}
	if err := dst.Close(); err != nil {
		return inv.fail("close %s: %v", dstWhere, err)
	}
	if err := inv.verifyCopy(target, v); err != nil {
		return inv.fail("copy to %s does not read back as the source: %v", dstWhere, err)
	}
	first, last := v.run[0].first, v.run[len(v.run)-1].last
	fmt.Fprintf(inv.stdout, "copied %d segments, versions %d..%d, and %d retention policies from %s to %s; read back and verified\n",
		len(v.run), first, last, len(v.policies), v.location, dstWhere)
	return exitOK
}

// targetConfig builds the target's configuration from the flags.
func targetConfig(source config.Config, toDir, toS3, toConfig string) (config.Config, error) {
	n := 0
	for _, s := range []string{toDir, toS3, toConfig} {
		if s != "" {
			n++
		}
	}
	if n == 0 {
		return config.Config{}, errors.New("no target: give --to-dir, --to-s3 or --to-config")
	}
	if toDir != "" && n > 1 {
		return config.Config{}, errors.New("--to-dir takes no --to-s3 or --to-config")
	}
	cfg := source
	if toConfig != "" {
		cfg = config.Default()
		if err := cfg.LoadFile(toConfig); err != nil {
			return cfg, fmt.Errorf("--to-config: %w", err)
		}
	}
	switch {
	case toDir != "":
		cfg.Persist.Backend, cfg.Persist.Dir = "disk", toDir
	case toS3 != "":
		rest, ok := strings.CutPrefix(toS3, "s3://")
		bucket, prefix, _ := strings.Cut(rest, "/")
		if !ok || bucket == "" {
			return cfg, fmt.Errorf("--to-s3 %q: want s3://BUCKET/PREFIX", toS3)
		}
		if cfg.Persist.Backend != "fakes3" {
			cfg.Persist.Backend = "s3"
		}
		cfg.Persist.Bucket, cfg.Persist.Prefix = bucket, strings.Trim(prefix, "/")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("target: %w", err)
	}
	return cfg, nil
}

// openTarget opens an empty target log, recovered and ready for Appends.
func (inv *invocation) openTarget(cfg config.Config) (persist.Log, string, error) {
	logger := slog.New(slog.NewTextHandler(inv.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch cfg.Persist.Backend {
	case "disk":
		dir := cfg.Persist.Dir
		if has, err := disk.HasLog(dir); err != nil {
			return nil, dir, err
		} else if has {
			return nil, dir, fmt.Errorf("refusing to copy into %s: it already holds a log", dir)
		}
		l, err := disk.Open(dir, disk.Options{Logger: logger})
		if err != nil {
			if strings.Contains(err.Error(), "in use") {
				return nil, dir, fmt.Errorf("refusing to copy into %s: %s holds it", dir, disk.LockHolder(dir))
			}
			return nil, dir, err
		}
		if _, err := l.Recover(inv.ctx); err != nil {
			l.Close()
			return nil, dir, err
		}
		return l, dir, nil
	default:
		if inv.env.OpenS3 == nil {
			return nil, "", errors.New("S3 backends are not available in this build")
		}
		l, stop, err := inv.env.OpenS3(inv.ctx, cfg)
		if err != nil {
			return nil, "", err
		}
		where := l.Location()
		if err := checkEmptyS3(inv.ctx, l); err != nil {
			l.Close()
			if stop != nil {
				stop()
			}
			return nil, where, err
		}
		if _, err := l.Recover(inv.ctx); err != nil {
			l.Close()
			if stop != nil {
				stop()
			}
			return nil, where, err
		}
		return &stoppingLog{Log: l, stop: stop}, where, nil
	}
}

// stoppingLog closes an S3 log and what runs beside it.
type stoppingLog struct {
	*s3log.Log
	stop func()
}

func (s *stoppingLog) Close() error {
	err := s.Log.Close()
	if s.stop != nil {
		s.stop()
	}
	return err
}

func checkEmptyS3(ctx context.Context, l *s3log.Log) error {
	segs, err := l.ListSegments(ctx)
	if err != nil {
		return err
	}
	if len(segs) > 0 {
		return fmt.Errorf("refusing to copy into %s: it already holds a log (%d segments, the first %s)", l.Location(), len(segs), l.SegmentKey(segs[0].First))
	}
	_, err = l.GetObject(ctx, l.PoliciesKey())
	switch {
	case errors.Is(err, s3log.ErrNoSuchKey):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("refusing to copy into %s: it already holds retention policies (%s)", l.Location(), l.PoliciesKey())
}

// copySegments checks every segment of the run and appends it to dst,
// copyInFlight at once, then stores the policies.
func copySegments(ctx context.Context, src source, v *view, dst persist.Log) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	setErr := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	slots := make(chan struct{}, copyInFlight)
	var r persist.SegmentReader
	for _, s := range v.run {
		if ctx.Err() != nil {
			break
		}
		data, err := src.read(ctx, s)
		if err == nil {
			err = checkSegment(&r, data, s)
		}
		if err != nil {
			setErr(fmt.Errorf("source %s: %w", s.where, err))
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := dst.Append(ctx, data); err != nil {
				setErr(fmt.Errorf("write segment %d: %w", s.first, err))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(v.policies) > 0 {
		if err := dst.StorePolicies(ctx, v.policies); err != nil {
			return err
		}
	}
	return nil
}

// checkSegment decodes every transaction of a segment.
func checkSegment(r *persist.SegmentReader, data []byte, s segment) error {
	if _, err := r.Reset(data); err != nil {
		return err
	}
	next := s.first
	for t, ok := r.Next(); ok; t, ok = r.Next() {
		if t.Version != next {
			return fmt.Errorf("%w: transaction %d where %d was due", persist.ErrCorruption, t.Version, next)
		}
		next++
	}
	return r.Err()
}

// verifyCopy reads the target back and compares its run with the source's.
func (inv *invocation) verifyCopy(target config.Config, want *view) error {
	src, err := inv.open(target)
	if err != nil {
		return err
	}
	defer src.close()
	got, err := src.load(inv.ctx)
	if err != nil {
		return err
	}
	if len(got.problems) > 0 {
		return fmt.Errorf("%s", where(got.problems[0]))
	}
	if len(got.run) != len(want.run) {
		return fmt.Errorf("%d segments, the source has %d", len(got.run), len(want.run))
	}
	for i, g := range got.run {
		w := want.run[i]
		if g.first != w.first || g.last != w.last || g.bytes != w.bytes || g.leader != w.leader {
			return fmt.Errorf("segment %d: %d..%d (%d bytes) at %s, the source has %d..%d (%d bytes)", i, g.first, g.last, g.bytes, g.where, w.first, w.last, w.bytes)
		}
	}
	if len(got.policies) != len(want.policies) {
		return fmt.Errorf("%d retention policies, the source has %d", len(got.policies), len(want.policies))
	}
	for id, pv := range want.policies {
		if got.policies[id] != pv {
			return fmt.Errorf("retention policy %s: %d, the source has %d", id, got.policies[id], pv)
		}
	}
	return nil
}
