package s3log

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

var _ persist.Shared = (*Log)(nil)

// pruneEvery is how many Polls pass between full listings, which notice
// the segments the leader's truncation deleted (the other Polls list only
// after the newest indexed segment).
const pruneEvery = 32

// Observe implements persist.Shared: Recover's listing, reading and
// planning, deleting nothing (Recover deletes nothing either: the winner of
// a claim does, with DeleteDiscarded) and writing no recovery checkpoint.
func (l *Log) Observe(ctx context.Context) (persist.Recovery, error) {
	rec, err := l.recover(ctx, false)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("s3log: observe: %w", err)
	}
	return rec, nil
}

// Poll implements persist.Shared.
func (l *Log) Poll(ctx context.Context, maxBytes int, accept func(persist.SegmentHeader) bool) ([][]byte, error) {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	next := tx.Version(0) // First of the segment that continues the run
	startAfter := ""
	if n := len(l.mu.index); n > 0 {
		next = l.mu.index[n-1].Last + 1
		startAfter = l.segmentKey(l.mu.index[n-1].First)
	}
	l.mu.polls++
	prune := l.mu.polls%pruneEvery == 0
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	if prune {
		if err := l.pruneTruncated(ctx); err != nil {
			return nil, fmt.Errorf("s3log: poll: %w", err)
		}
	}
	listed, err := l.listSegmentsAfter(ctx, startAfter)
	if err != nil {
		return nil, fmt.Errorf("s3log: poll: %w", err)
	}
	// Candidates: the listed names from next on, within maxBytes by their
	// listed sizes. Names alone cannot prove contiguity (a name says First,
	// not Last); the headers decide below.
	var picked []persist.SegmentInfo
	total := 0
	for _, s := range listed {
		if s.First < next {
			continue // an orphan overlapping the run: never part of the log
		}
		if len(picked) > 0 && total+int(s.Bytes) > maxBytes {
			break
		}
		picked = append(picked, s)
		total += int(s.Bytes)
	}
	if len(picked) == 0 || picked[0].First != next {
		return nil, nil // nothing new, or a write still in flight at next
	}
	datas := make([][]byte, len(picked))
	err = l.forEachParallel(ctx, len(picked), func(ctx context.Context, i int) error {
		data, err := l.get(ctx, l.segmentKey(picked[i].First))
		if errors.Is(err, errNoSuchKey) {
			return nil // deleted meanwhile (a leader's recovery): stops the run here
		}
		if err != nil {
			return fmt.Errorf("read segment %d: %w", picked[i].First, err)
		}
		datas[i] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("s3log: poll: %w", err)
	}
	var out [][]byte
	var infos []persist.SegmentInfo
	for i, data := range datas {
		if data == nil || picked[i].First != next {
			break
		}
		h, err := persist.DecodeSegmentHeader(data)
		if err != nil || h.First != next {
			// S3 PUTs are atomic: a bad segment at the head of the run is
			// damage, not a write in progress. Stop; a takeover's recovery
			// decides about it.
			l.log.Warn("s3log: poll found an unreadable segment; not following past it", "key", l.segmentKey(picked[i].First), "err", err)
			break
		}
		if !accept(h) {
			break
		}
		out = append(out, data)
		infos = append(infos, h.Info())
		next = h.Last + 1
	}
	if len(infos) == 0 {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.mu.index); n > 0 && l.mu.index[n-1].Last+1 != infos[0].First {
		return nil, fmt.Errorf("s3log: poll: concurrent Poll calls (index moved to %d)", l.mu.index[n-1].Last)
	}
	l.mu.index = append(l.mu.index, infos...)
	return out, nil
}

// OldestRetained implements persist.Shared.
func (l *Log) OldestRetained() tx.Version {
	l.mu.Lock()
	defer l.mu.Unlock()
	return persist.Recovery{Segments: l.mu.index}.OldestRetained()
}

// pruneTruncated drops from the index the segments that are no longer
// stored below the oldest stored one (the leader truncated them).
func (l *Log) pruneTruncated(ctx context.Context) error {
	start := time.Now()
	page, err := l.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(l.cfg.Bucket), Prefix: aws.String(l.segPrefix), MaxKeys: aws.Int32(1)})
	l.observe(OpList, start, err)
	if err != nil {
		return fmt.Errorf("list s3://%s/%s: %w", l.cfg.Bucket, l.segPrefix, err)
	}
	if len(page.Contents) == 0 {
		return nil
	}
	first, ok := persist.ParseSegmentName(aws.ToString(page.Contents[0].Key)[len(l.segPrefix):])
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for n < len(l.mu.index)-1 && l.mu.index[n].First < first {
		n++
	}
	l.mu.index = slices.Delete(l.mu.index, 0, n)
	return nil
}

// listSegmentsAfter lists the segment names after startAfter (a key; ""
// for all), in order.
func (l *Log) listSegmentsAfter(ctx context.Context, startAfter string) ([]persist.SegmentInfo, error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(l.cfg.Bucket), Prefix: aws.String(l.segPrefix)}
	if startAfter != "" {
		in.StartAfter = aws.String(startAfter)
	}
	var out []persist.SegmentInfo
	p := s3.NewListObjectsV2Paginator(l.client, in)
	for p.HasMorePages() {
		start := time.Now()
		page, err := p.NextPage(ctx)
		l.observe(OpList, start, err)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s after %q: %w", l.cfg.Bucket, l.segPrefix, startAfter, err)
		}
		for _, o := range page.Contents {
			first, ok := persist.ParseSegmentName(aws.ToString(o.Key)[len(l.segPrefix):])
			if ok {
				out = append(out, persist.SegmentInfo{First: first, Bytes: aws.ToInt64(o.Size)})
			}
		}
		if len(out) > 0 && len(page.Contents) > 0 {
			break // one page is plenty for one Poll; the next Poll lists on
		}
	}
	return out, nil
}
