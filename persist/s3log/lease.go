package s3log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The lease: <prefix>/leader, a small JSON object the leader rewrites every
// renew interval. It says who leads and where to reach it; replicas watch
// it change and take over when it stops changing. It is not what keeps two
// leaders apart (the conditional write of the next segment does that): it
// only decides when a replica tries.
//
// Every write is conditional, so that two servers never overwrite each
// other's lease unknowingly: If-None-Match: * creates it, If-Match: <the
// ETag last seen> replaces it. A 412 (or an ambiguous failure) is settled by
// reading the lease back: our exact bytes mean our write landed (a
// timed-out attempt that S3 stored is not a loss).

// ErrLeaseChanged: the lease is no longer the one the conditional write
// expected (someone else wrote it, or created it first).
var ErrLeaseChanged = errors.New("s3log: the lease changed meanwhile")

// Lease is the content of the lease object.
type Lease struct {
	// LeaderID is the leader term's id (the leader_id of its segments).
	LeaderID string `json:"leader_id"`
	// URL is the leader's advertised URL, where replicas redirect clients.
	URL string `json:"url"`
	// TermFirstVersion is the version of the term's claim segment: a lease
	// with a greater one belongs to a later term.
	TermFirstVersion uint64 `json:"term_first_version"`
	// Renewals counts the term's writes of the lease, so that each write
	// differs from the last (replicas see the ETag change).
	Renewals uint64 `json:"renewals"`
	// RenewedAt is the writer's wall clock, for people reading the object;
	// no server compares it with its own clock.
	RenewedAt time.Time `json:"renewed_at"`
	// Released marks a lease its leader gave up on a clean shutdown: a
	// replica takes over at once, a starting server claims the log
	// without waiting for the lease to go stale.
	Released bool `json:"released,omitempty"`
}

// LeaseKey returns the lease object's key.
func (l *Log) LeaseKey() string { return l.cfg.keyPrefix() + "leader" }

// ReadLease returns the stored lease and its ETag; found is false when there
// is none.
func (l *Log) ReadLease(ctx context.Context) (lease Lease, etag string, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	data, etag, err := l.getWithETag(ctx, l.LeaseKey())
	if errors.Is(err, errNoSuchKey) {
		return Lease{}, "", false, nil
	}
	if err != nil {
		return Lease{}, "", false, fmt.Errorf("s3log: read lease: %w", err)
	}
	if err := json.Unmarshal(data, &lease); err != nil {
		return Lease{}, "", false, fmt.Errorf("s3log: read lease s3://%s/%s: %w", l.cfg.Bucket, l.LeaseKey(), err)
	}
	return lease, etag, true, nil
}

// WriteLease stores lease conditionally: with prevETag "" only if no lease
// exists, else only if the stored lease's ETag is still prevETag. It returns
// the new ETag, or an error wrapping ErrLeaseChanged when the condition
// failed and the stored lease is not ours.
func (l *Log) WriteLease(ctx context.Context, lease Lease, prevETag string) (string, error) {
	data, err := json.Marshal(lease)
	if err != nil {
		return "", fmt.Errorf("s3log: write lease: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	key := l.LeaseKey()
	in := &s3.PutObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String("application/json")}
	if prevETag == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(prevETag)
	}
	start := time.Now()
	var att attempts
	out, err := l.client.PutObject(ctx, in, l.track(&att))
	l.noteRetries(&att)
	l.observe(OpPut, start, err)
	if err == nil {
		return aws.ToString(out.ETag), nil
	}
	if !isPreconditionFailed(err) && !att.ambiguous.Load() && !isConditionalConflict(err) {
		return "", fmt.Errorf("s3log: write lease s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	// 412 (or an attempt that may have landed): was it our own write?
	stored, etag, gerr := l.getWithETag(ctx, key)
	switch {
	case gerr == nil && bytes.Equal(stored, data):
		return etag, nil
	case isPreconditionFailed(err) || isConditionalConflict(err):
		return "", fmt.Errorf("s3log: write lease: %w", ErrLeaseChanged)
	}
	return "", fmt.Errorf("s3log: write lease s3://%s/%s: %w", l.cfg.Bucket, key, err)
}

func isConditionalConflict(err error) bool { return apiCode(err) == "ConditionalRequestConflict" }

// getWithETag reads a whole object and its ETag; a missing key is
// errNoSuchKey.
func (l *Log) getWithETag(ctx context.Context, key string) ([]byte, string, error) {
	start := time.Now()
	var att attempts
	out, err := l.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key)}, l.track(&att))
	var data []byte
	etag := ""
	if err == nil {
		etag = aws.ToString(out.ETag)
		data, err = readAll(out)
	}
	l.noteRetries(&att)
	if isNotFound(err) {
		l.observe(OpGet, start, nil)
		return nil, "", errNoSuchKey
	}
	l.observe(OpGet, start, err)
	if err != nil {
		return nil, "", fmt.Errorf("get s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	return data, etag, nil
}

func readAll(out *s3.GetObjectOutput) ([]byte, error) {
	defer out.Body.Close()
	var b bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 && n < 1<<20 {
		b.Grow(int(n))
	}
	_, err := b.ReadFrom(out.Body)
	return b.Bytes(), err
}
