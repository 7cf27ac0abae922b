package s3log

import (
	"context"
	"errors"
	"fmt"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Offline inspection (weaseldb log stat|verify|dump|copy): read-only access
// to the objects under the prefix, without Recover (which plans a claim)
// and without leadership.

// ErrNoSuchKey is returned by GetObject for a missing key.
var ErrNoSuchKey = errNoSuchKey

// ListSegments lists the segment objects under the prefix, in key order
// (version order): each entry's First is parsed from the key, Bytes is the
// object's size.
func (l *Log) ListSegments(ctx context.Context) ([]persist.SegmentInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	listed, err := l.listSegments(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3log: %w", err)
	}
	segs := make([]persist.SegmentInfo, len(listed))
	for i, s := range listed {
		segs[i] = s.SegmentInfo
	}
	return segs, nil
}

// GetObject reads a whole object; a missing key is an error wrapping
// ErrNoSuchKey.
func (l *Log) GetObject(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	data, err := l.get(ctx, key)
	if errors.Is(err, errNoSuchKey) {
		return nil, fmt.Errorf("s3log: s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	return data, err
}

// SegmentKey returns the object key of the segment starting at first.
func (l *Log) SegmentKey(first tx.Version) string { return l.segmentKey(first) }

// PoliciesKey returns the object key of the retention policies.
func (l *Log) PoliciesKey() string { return l.policyKey }

// Location names the bucket and prefix, s3://bucket/prefix/.
func (l *Log) Location() string { return "s3://" + l.cfg.Bucket + "/" + l.cfg.keyPrefix() }
