// Package s3log is the S3 backend of persist.Log, on aws-sdk-go-v2.
//
// # Layout
//
//	<prefix>/log/<First as 20 digits>   one object per segment, never overwritten
//	<prefix>/floor/<F as 20 digits>     truncation floor markers (empty objects)
//	<prefix>/retention.json             {"policies": {id: version}}, overwritten
//	<prefix>/recovery-checkpoint        the last recovered run's headers, overwritten
//	<prefix>/leader                     the leader's lease (JSON), conditional writes only (lease.go)
//	Config.CacheDir (local)             copies of recent segments, by ETag
//
// # How each operation maps to S3
//
//  1. Append: PutObject with If-None-Match: * (at most Config.MaxInFlight
//     at once). 412 PreconditionFailed means another leader wrote that
//     name: ErrFenced. A PUT is retried by the SDK's standard retryer
//     (exponential backoff, full jitter) on 5xx, SlowDown, timeouts,
//     connection errors and 409 ConditionalRequestConflict; there is no
//     client-side retry quota, because the pipeline already bounds the
//     requests in flight.
//     An Append whose First names a segment the last Recover discarded
//     (a torn tail, a returned term's orphan) replaces it with If-Match:
//     <the ETag Recover read> instead: of two servers claiming over the
//     same orphan exactly one wins, and a live leader's If-None-Match PUT
//     of that name keeps failing throughout. The store must honour
//     If-Match on PutObject (AWS S3 does); a store that ignored it would
//     let two claimants over one orphan both win. The conformance suite
//     checks it (logtest ClaimReplacesDiscardedAtItsName), also against
//     an independent store (scripts/s3compat.sh).
//  2. Ambiguous writes: a retried PUT may be answered 412 because its own
//     earlier attempt was stored and only the answer was lost (a dropped
//     connection, a timeout, a 500 after the write). The Log watches every
//     failed attempt; when one of them may have taken effect (anything but
//     503 and 409 ConditionalRequestConflict, which S3 answers before
//     writing), a 412 or a final failure is resolved by reading the object
//     back: our segment means the Append succeeded, another means fenced,
//     a missing object means the error stands (after a 412: fenced, the
//     object was deleted). A read-back that fails (503, a dropped
//     connection, the deadline) is retried with backoff a few times and
//     then fails the Append as a transient error, never as fenced: only a
//     read that shows another leader's segment deposes this one. Otherwise
//     a 412 is final: ErrFenced. The ambiguity outlives the call: when such an Append fails
//     (a timeout while S3 held the PUT, which it stores later), the retry
//     of the same segment is a new Append, and its 412 is resolved by
//     read-back too (Log.mu.mayExist). "Our segment" is its identity, not
//     its bytes: the same leader id, First, Last and count (sameSegment).
//     The pipeline retries with the very bytes it first wrote, but a
//     start-up retried after a timed-out claim (cmd/weaseldb openEngine)
//     encodes its claim again with a new timestamp; the leader id, stable
//     for the process (engine.Config.LeaderID), says it is ours. Two
//     servers never share a leader id.
//  3. Recover: paged ListObjectsV2 of "<prefix>/log/" (names, sizes,
//     ETags); the headers of the segments the recovery checkpoint knows
//     with the same size and ETag come from it (checkpoint.go), every other
//     segment is read (from the local cache when its copy carries the
//     listed ETag, else GetObject, MaxInFlight at once) and validated with
//     persist.DecodeSegmentHeader: the checksum covers the whole segment,
//     and a corrupt segment must be found (ErrCorruption), not served
//     later. So a restart reads what was written since the last recovery,
//     not the whole log (the first recovery, or one without a usable
//     checkpoint, reads everything); the checkpoint is rewritten when
//     something new was read (an overwrite of immutable segments' headers:
//     whoever wins the log may use it). persist.PlanRecovery decides.
//     Recover deletes nothing (see persist's package doc): it remembers the
//     discarded keys with the ETags listed.
//     3a. DeleteDiscarded, once this Log's claim is stored: a DeleteObject
//     with If-Match: <ETag> per discarded key, so that only the very
//     object recovery judged is deleted; a key another server rewrote
//     since (412) is left alone. A store that does not implement
//     conditional deletes (501, or 400 InvalidArgument/InvalidRequest)
//     gets a plain delete, with a warning: the residual risk is a delete
//     the store holds back for longer than another server takes to
//     recover, win a later claim and write that name.
//  4. ReadFrom: persist.SelectReadFrom over the in-memory index, then each
//     segment from the local cache (Config.CacheDir; a copy is used only
//     while its ETag is the one S3 listed or returned for that name) or a
//     GetObject (in parallel, kept in the cache), each validated. A
//     segment that vanished meanwhile (truncated) is ErrNotFound.
//  5. Truncate: first a PUT of the floor marker "<prefix>/floor/<F>", F
//     the Last of the newest segment to delete (the next segment, kept,
//     starts at F+1 and is stored); then DeleteObjects in batches of at most
//     1000 keys; then the older floor markers go. S3 promises no order
//     within a batch, nor between a crash and the batches before it, so a
//     crash may leave any subset of the truncated segments, with holes.
//     Recovery reads the highest floor F and ignores every segment named
//     <= F (deleted by DeleteDiscarded later), so such a hole is never
//     mistaken for a gap after which everything is discarded. The run must
//     then start exactly at F+1: a floor whose next segment is missing is
//     ErrCorruption, never a silent loss. A deposed leader's floor is below
//     what it acknowledged (truncation never passes the durable version),
//     so the highest floor is always inside the log.
//  6. Policies: a plain PutObject overwrite / GetObject of retention.json.
//
// # Replicas (follow.go)
//
// Observe is Recover for a server that only reads (no checkpoint written);
// Poll lists after the newest indexed segment, reads what continues the
// run and indexes it, so that ReadFrom serves a replica's subscribers like
// a leader's.
//
// # HTTP client
//
// Built with awshttp.NewBuildableClient: config.LoadDefaultConfig refuses
// any other client type when AWS_CA_BUNDLE is set. Connect, TLS handshake
// and response-header timeouts, connection pool limits and an optional
// DialContext (an in-process connection to a fake S3) are set on its
// transport; Config.OperationTimeout bounds each Log call to S3.
//
// # Metrics
//
// Stats returns per-operation counts, errors and latency sums; Config.OnRequest
// sees every request as it completes. Nothing is registered globally.
package s3log

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Op is a kind of S3 request, for metrics.
type Op uint8

const (
	OpPut Op = iota
	OpGet
	OpList
	OpDelete
	opCount
)

// String names the S3 operation.
func (op Op) String() string {
	switch op {
	case OpPut:
		return "PutObject"
	case OpGet:
		return "GetObject"
	case OpList:
		return "ListObjectsV2"
	case OpDelete:
		return "DeleteObjects"
	}
	return "unknown"
}

// OpStats are the counters of one Op.
type OpStats struct {
	Requests uint64
	Errors   uint64
	// Latency is the sum of the requests' latencies, retries included.
	Latency time.Duration
}

// Stats is a snapshot of the Log's counters.
type Stats struct {
	Ops [opCount]OpStats
	// Retries counts attempts beyond the first, over all requests.
	Retries uint64
	// Fenced counts Appends that answered ErrFenced.
	Fenced uint64
	// AmbiguousResolved counts Appends whose outcome was settled by reading
	// the object back (see the package doc).
	AmbiguousResolved uint64
}

// Op returns the counters of op.
func (s Stats) Op(op Op) OpStats {
	if op >= opCount {
		return OpStats{}
	}
	return s.Ops[op]
}

type opCounters struct {
	requests, errors, latencyNanos atomic.Uint64
}

// Log is a persist.Log on S3. Safe for concurrent use as persist.Log says.
type Log struct {
	cfg         Config        // immutable, defaults filled
	client      *s3.Client    // never nil
	segPrefix   string        // "<prefix>/log/"
	floorPrefix string        // "<prefix>/floor/"
	policyKey   string        // "<prefix>/retention.json"
	putSlots    chan struct{} // MaxInFlight tokens
	log         *slog.Logger
	cache       *segmentCache // nil without Config.CacheDir

	ops                               [opCount]opCounters
	retries, fenced, ambiguousSettled atomic.Uint64

	mu struct {
		sync.Mutex
		index []persist.SegmentInfo // stored segments by First; guarded by mu
		// mayExist holds the Firsts of Appends that failed after an attempt
		// that may have taken effect (a timeout, a dropped connection): the
		// pipeline retries such an Append with a new call, whose 412 must
		// be resolved by read-back too, not taken as fencing.
		mayExist map[tx.Version]struct{}
		// discarded maps the Firsts of the segments the last Recover
		// discarded to the ETags it read ("" when unreadable): deleted by
		// DeleteDiscarded, replaced conditionally by an Append of the name.
		discarded map[tx.Version]string
		// claimed: an Append succeeded since the last Recover (this Log
		// won the log), which DeleteDiscarded requires.
		claimed bool
		// belowFloor holds segment keys named at or below the truncation
		// floor that recovery found (an interrupted truncation): deleted by
		// DeleteDiscarded.
		belowFloor []string
		// etags: the ETag S3 listed (at recovery) or returned (on PUT) for
		// each segment, to tell a cached copy is the stored one.
		etags     map[tx.Version]string
		recovered bool
		closed    bool
		polls     uint64 // Poll calls, to prune the index now and then
	}
}

var _ persist.Log = (*Log)(nil)

// Open builds the S3 client. It makes no request: Recover is the first.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg.ensureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.DialContext = dialer.DialContext
		if cfg.DialContext != nil {
			t.DialContext = cfg.DialContext
		}
		t.TLSHandshakeTimeout = cfg.ConnectTimeout
		t.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
		t.MaxConnsPerHost = cfg.MaxConnsPerHost
		t.MaxIdleConns = cfg.MaxIdleConns
		t.MaxIdleConnsPerHost = cfg.MaxIdleConns
		t.IdleConnTimeout = cfg.IdleConnTimeout
		if cfg.TLS != nil {
			t.TLSClientConfig = cfg.TLS.Clone()
		}
	})
	retryer := func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = cfg.RetryMaxAttempts
			o.MaxBackoff = cfg.RetryMaxBackoff
			o.RateLimiter = ratelimit.None
			o.Retryables = append(slices.Clone(o.Retryables), retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				if apiCode(err) == "ConditionalRequestConflict" {
					return aws.TrueTernary
				}
				return aws.UnknownTernary
			}))
		})
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(retryer),
	}
	if cfg.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	}
	loadOpts = append(loadOpts, config.WithLogger(sdkLogger{cfg.Logger}))
	if cfg.Endpoint != "" && !cfg.EC2IMDS {
		loadOpts = append(loadOpts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	if cfg.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3log: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.UsePathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	if awsCfg.Credentials != nil {
		// Fail the start at once, naming the fix, rather than retrying
		// every operation on a chain that has no credentials to give.
		if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
			return nil, fmt.Errorf("s3log: no AWS credentials (set [persist] access_key_id and secret_access_key, or the AWS environment): %w", err)
		}
	}
	if err := checkBucket(ctx, client, cfg); err != nil {
		return nil, err
	}
	p := cfg.keyPrefix()
	l := &Log{cfg: cfg, client: client, segPrefix: p + "log/", floorPrefix: p + "floor/",
		policyKey: p + "retention.json", putSlots: make(chan struct{}, cfg.MaxInFlight), log: cfg.Logger}
	if cfg.CacheDir != "" {
		c, err := openSegmentCache(cfg.CacheDir, cfg.CacheBytes, cfg.Logger)
		if err != nil {
			return nil, err
		}
		l.cache = c // nil when another process holds it
	}
	return l, nil
}

// ErrNoSuchBucket: the configured bucket does not exist at the endpoint.
// It is permanent (no retry will create it): Open fails at once.
var ErrNoSuchBucket = errors.New("s3log: no such bucket")

// checkBucket asks S3 whether the bucket exists (HeadBucket), so that a
// wrong bucket or endpoint fails the start at once, naming both, instead
// of after every retry of the first listing. Any other failure (the
// endpoint is briefly unreachable, HeadBucket is not permitted) is left to
// the operations that follow, which retry.
func checkBucket(ctx context.Context, client *s3.Client, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.OperationTimeout)
	defer cancel()
	_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)})
	if err == nil {
		return nil
	}
	var nf *types.NotFound
	if errors.As(err, &nf) || apiCode(err) == "NoSuchBucket" || apiCode(err) == "NotFound" || httpStatus(err) == http.StatusNotFound {
		where := cfg.Endpoint
		if where == "" {
			where = "AWS"
		}
		return fmt.Errorf("%w: bucket %q does not exist at %s (create it, or fix [persist] bucket and endpoint)", ErrNoSuchBucket, cfg.Bucket, where)
	}
	cfg.Logger.Debug("s3log: HeadBucket failed; the first operation will tell", "bucket", cfg.Bucket, "err", err)
	return nil
}

// sdkLogger routes the AWS SDK's log lines through slog, so they are
// structured like every other line instead of plain "SDK ... WARN" text.
type sdkLogger struct{ log *slog.Logger }

func (s sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelWarn
	if c == logging.Debug {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "s3log: aws sdk: "+fmt.Sprintf(format, v...))
}

// Stats returns a snapshot of the counters.
func (l *Log) Stats() Stats {
	var s Stats
	for i := range l.ops {
		s.Ops[i] = OpStats{Requests: l.ops[i].requests.Load(), Errors: l.ops[i].errors.Load(),
			Latency: time.Duration(l.ops[i].latencyNanos.Load())}
	}
	s.Retries = l.retries.Load()
	s.Fenced = l.fenced.Load()
	s.AmbiguousResolved = l.ambiguousSettled.Load()
	return s
}

func (l *Log) observe(op Op, start time.Time, err error) {
	elapsed := time.Since(start)
	c := &l.ops[op]
	c.requests.Add(1)
	c.latencyNanos.Add(uint64(elapsed))
	if err != nil {
		c.errors.Add(1)
	}
	if l.cfg.OnRequest != nil {
		l.cfg.OnRequest(op, elapsed, err)
	}
}

// attempts wraps the retryer of one request to learn what happened to it:
// how many attempts were made, and whether a failed attempt might have
// taken effect anyway (then a later 412 may answer our own write).
type attempts struct {
	n         atomic.Int32
	ambiguous atomic.Bool
}

type attemptTracker struct {
	aws.RetryerV2
	a *attempts
}

func (t attemptTracker) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	t.a.n.Add(1)
	return t.RetryerV2.GetAttemptToken(ctx)
}

// IsErrorRetryable sees the error of every failed attempt.
func (t attemptTracker) IsErrorRetryable(err error) bool {
	retryable := t.RetryerV2.IsErrorRetryable(err)
	if retryable && !notApplied(err) {
		t.a.ambiguous.Store(true)
	}
	return retryable
}

// notApplied reports an answer after which S3 guarantees the write did not
// happen: 503 (SlowDown, ServiceUnavailable: rejected before processing)
// and 409 ConditionalRequestConflict. A 500, a timeout or a broken
// connection may come after the write took effect.
func notApplied(err error) bool {
	return httpStatus(err) == http.StatusServiceUnavailable || apiCode(err) == "ConditionalRequestConflict"
}

func (l *Log) track(a *attempts) func(*s3.Options) {
	return func(o *s3.Options) {
		base, ok := o.Retryer.(aws.RetryerV2)
		if !ok {
			base = retryerV2{o.Retryer}
		}
		o.Retryer = attemptTracker{RetryerV2: base, a: a}
	}
}

// retryerV2 adapts a plain aws.Retryer (never the case with the standard
// retryer, but Retryer is an interface).
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.Retryer.GetInitialToken(), nil
}

func (l *Log) checkLocked() error {
	if l.mu.closed {
		return errors.New("s3log: log is closed")
	}
	if !l.mu.recovered {
		return errors.New("s3log: Recover must be called first")
	}
	return nil
}

func (l *Log) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkLocked()
}

func (l *Log) segmentKey(first tx.Version) string {
	return string(persist.AppendSegmentName([]byte(l.segPrefix), first))
}

// Recover implements persist.Log; see the package doc.
func (l *Log) Recover(ctx context.Context) (persist.Recovery, error) {
	return l.recover(ctx, true)
}

// recover is Recover; a replica's Observe passes leading false: it stores
// no recovery checkpoint (a replica writes nothing to the bucket).
func (l *Log) recover(ctx context.Context, leading bool) (persist.Recovery, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	all, err := l.listSegments(ctx)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("s3log: recover: %w", err)
	}
	floors, err := l.listFloors(ctx)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("s3log: recover: %w", err)
	}
	// Segments at or below the truncation floor were truncated; a crash
	// may have left some of them, in any order (see the package doc).
	var floor tx.Version
	hasFloor := len(floors) > 0
	if hasFloor {
		floor = floors[len(floors)-1]
	}
	var belowFloor []string
	listed := all
	if hasFloor {
		listed = listed[:0:0]
		for _, s := range all {
			if s.First <= floor {
				belowFloor = append(belowFloor, l.segmentKey(s.First))
				continue
			}
			listed = append(listed, s)
		}
		if len(belowFloor) > 0 {
			l.log.Warn("s3log: recovery found segments below the truncation floor (an interrupted truncation); deleted once this server's claim is stored",
				"floor", floor, "count", len(belowFloor))
		}
	}
	stored, read, err := l.readStoredSegments(ctx, listed)
	etags := make([]string, len(listed))
	for i, s := range listed {
		etags[i] = s.etag // the ETag listed is the one a GET returns
	}
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("s3log: recover: %w", err)
	}
	rec, err := persist.PlanRecovery(stored)
	if err != nil {
		return persist.Recovery{}, fmt.Errorf("s3log: recover s3://%s/%s: %w", l.cfg.Bucket, l.segPrefix, err)
	}
	if hasFloor && (len(rec.Segments) == 0 || rec.Segments[0].First != floor+1) {
		first := "none"
		if len(rec.Segments) > 0 {
			first = fmt.Sprint(rec.Segments[0].First)
		}
		return persist.Recovery{}, fmt.Errorf("s3log: recover s3://%s/%s: %w: truncated up to %d, but the oldest retained segment starts at %s, not %d",
			l.cfg.Bucket, l.segPrefix, persist.ErrCorruption, floor, first, floor+1)
	}
	etagOf := make(map[tx.Version]string, len(listed))
	for i, s := range listed {
		etagOf[s.First] = etags[i]
	}
	discarded := make(map[tx.Version]string, len(rec.Discarded))
	for _, d := range rec.Discarded {
		// Not deleted here: this server has not won the log yet.
		l.log.Warn("s3log: recovery discards a segment that was never acknowledged (after a gap, or torn/corrupt at the tail); deleted once this server's claim is stored",
			"first", d.First, "last", d.Last, "bytes", d.Bytes, "key", l.segmentKey(d.First))
		discarded[d.First] = etagOf[d.First]
	}
	if plantedRecoverDeletes { // a planted bug, for tests only: see plant_on.go
		var doomed []string
		for first := range discarded {
			doomed = append(doomed, l.segmentKey(first))
		}
		if err := l.deleteKeys(ctx, doomed); err != nil {
			return persist.Recovery{}, fmt.Errorf("s3log: recover: %w", err)
		}
		clear(discarded)
	}
	if read > 0 && leading {
		// Overwrites, deletes nothing: its headers are of immutable
		// segments, so whoever wins the log may use it.
		l.storeCheckpoint(ctx, checkpointOf(rec, stored, listed))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return persist.Recovery{}, errors.New("s3log: log is closed")
	}
	l.mu.index = slices.Clone(rec.Segments)
	l.mu.discarded = discarded
	l.mu.belowFloor = belowFloor
	l.mu.claimed = false
	l.mu.etags = make(map[tx.Version]string, len(listed))
	for _, s := range listed {
		l.mu.etags[s.First] = s.etag
	}
	l.mu.recovered = true
	return rec, nil
}

// listFloors returns the truncation floors stored, ascending.
func (l *Log) listFloors(ctx context.Context) ([]tx.Version, error) {
	var out []tx.Version
	p := s3.NewListObjectsV2Paginator(l.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(l.cfg.Bucket), Prefix: aws.String(l.floorPrefix)})
	for p.HasMorePages() {
		start := time.Now()
		page, err := p.NextPage(ctx)
		l.observe(OpList, start, err)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", l.cfg.Bucket, l.floorPrefix, err)
		}
		for _, o := range page.Contents {
			if f, ok := persist.ParseSegmentName(strings.TrimPrefix(aws.ToString(o.Key), l.floorPrefix)); ok {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func (l *Log) floorKey(f tx.Version) string {
	return string(persist.AppendSegmentName([]byte(l.floorPrefix), f))
}

// listSegments pages through ListObjectsV2 and returns the segment names
// found (First, Bytes and ETag), in key order, which is version order.
func (l *Log) listSegments(ctx context.Context) ([]listedSegment, error) {
	var out []listedSegment
	p := s3.NewListObjectsV2Paginator(l.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(l.cfg.Bucket), Prefix: aws.String(l.segPrefix)})
	for p.HasMorePages() {
		start := time.Now()
		page, err := p.NextPage(ctx)
		l.observe(OpList, start, err)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", l.cfg.Bucket, l.segPrefix, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), l.segPrefix)
			first, ok := persist.ParseSegmentName(name)
			if !ok {
				continue // not ours
			}
			out = append(out, listedSegment{SegmentInfo: persist.SegmentInfo{First: first, Bytes: aws.ToInt64(o.Size)}, etag: aws.ToString(o.ETag)})
		}
	}
	return out, nil
}

// readStoredSegments returns what recovery needs of each listed segment:
// from the recovery checkpoint when it knows the segment with the same
// size and ETag, else by reading and checking the segment (read counts
// those).
func (l *Log) readStoredSegments(ctx context.Context, listed []listedSegment) (stored []persist.StoredSegment, read int, err error) {
	known := l.loadCheckpoint(ctx)
	stored = make([]persist.StoredSegment, len(listed))
	var toRead []int
	for i, s := range listed {
		if e, ok := known[s.First]; ok && e.etag != "-" && e.etag == s.etag && int64(e.header.Bytes) == s.Bytes {
			stored[i] = persist.StoredSegment{First: s.First, Bytes: s.Bytes, Header: e.header}
			continue
		}
		toRead = append(toRead, i)
	}
	err = l.forEachParallel(ctx, len(toRead), func(ctx context.Context, j int) error {
		i := toRead[j]
		if l.cache != nil {
			if data, ok := l.cache.get(listed[i].First, listed[i].etag); ok {
				if h, herr := persist.DecodeSegmentHeader(data); herr == nil && h.First == listed[i].First {
					h.LeaderID = slices.Clone(h.LeaderID)
					stored[i] = persist.StoredSegment{First: listed[i].First, Bytes: int64(len(data)), Header: h}
					return nil
				}
			}
		}
		data, err := l.get(ctx, l.segmentKey(listed[i].First))
		if errors.Is(err, errNoSuchKey) { // deleted since the listing: a torn tail at worst
			stored[i] = persist.StoredSegment{First: listed[i].First, Err: fmt.Errorf("%w: vanished during recovery", persist.ErrCorruption)}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read segment %d: %w", listed[i].First, err)
		}
		h, herr := persist.DecodeSegmentHeader(data)
		if herr == nil {
			h.LeaderID = slices.Clone(h.LeaderID) // do not keep the segment alive
		}
		stored[i] = persist.StoredSegment{First: listed[i].First, Bytes: int64(len(data)), Header: h, Err: herr}
		return nil
	})
	return stored, len(toRead), err
}

// checkpointOf encodes the recovered run's headers for the next recovery.
func checkpointOf(rec persist.Recovery, stored []persist.StoredSegment, listed []listedSegment) []byte {
	byFirst := make(map[tx.Version]int, len(stored))
	for i, s := range stored {
		if s.Err == nil {
			byFirst[s.First] = i
		}
	}
	run := make([]persist.SegmentHeader, 0, len(rec.Segments))
	etags := make(map[tx.Version]string, len(rec.Segments))
	for _, seg := range rec.Segments {
		i, ok := byFirst[seg.First]
		if !ok {
			continue
		}
		run = append(run, stored[i].Header)
		etags[seg.First] = listed[i].etag
	}
	return encodeCheckpoint(run, etags)
}

var errNoSuchKey = errors.New("no such key")

// get reads a whole object; a missing key is errNoSuchKey.
func (l *Log) get(ctx context.Context, key string) ([]byte, error) {
	data, _, err := l.getETag(ctx, key)
	return data, err
}

// getETag reads a whole object and its ETag.
func (l *Log) getETag(ctx context.Context, key string) ([]byte, string, error) {
	start := time.Now()
	var att attempts
	out, err := l.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key)}, l.track(&att))
	var data []byte
	if err == nil {
		data, err = io.ReadAll(out.Body)
		out.Body.Close()
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
	return data, aws.ToString(out.ETag), nil
}

func (l *Log) noteRetries(a *attempts) {
	if n := a.n.Load(); n > 1 {
		l.retries.Add(uint64(n - 1))
	}
}

// Append implements persist.Log; see the package doc.
func (l *Log) Append(ctx context.Context, data []byte) error {
	h, err := persist.DecodeSegmentHeader(data)
	if err != nil {
		return fmt.Errorf("s3log: append: %w", err)
	}
	if err := l.check(); err != nil {
		return err
	}
	select {
	case l.putSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("s3log: append segment %d: %w", h.First, ctx.Err())
	}
	etag, err := l.putSegment(ctx, h.First, data)
	<-l.putSlots
	if errors.Is(err, persist.ErrFenced) {
		l.fenced.Add(1)
	}
	if err != nil {
		return fmt.Errorf("s3log: append segment %d: %w", h.First, err)
	}
	if l.cache != nil {
		l.cache.put(h.First, etag, data)
	}
	info := h.Info()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.claimed = true
	delete(l.mu.discarded, info.First) // replaced, if it was there
	i, found := slices.BinarySearchFunc(l.mu.index, info.First, func(s persist.SegmentInfo, first tx.Version) int {
		return cmp.Compare(s.First, first)
	})
	if !found {
		l.mu.index = slices.Insert(l.mu.index, i, info)
	}
	if l.mu.etags != nil {
		l.mu.etags[h.First] = etag
	}
	return nil
}

func (l *Log) putSegment(ctx context.Context, first tx.Version, data []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	key := l.segmentKey(first)
	var att attempts
	mayExist, replace := l.putState(first)
	if mayExist {
		att.ambiguous.Store(true) // an earlier Append of this segment may have stored it
	}
	etag, err := l.putSegmentOnce(ctx, key, data, replace, &att)
	// Remember a failure that may hide a stored object for the retry.
	l.setMayExist(first, err != nil && !errors.Is(err, persist.ErrFenced) && (att.ambiguous.Load() || !notApplied(err)))
	return etag, err
}

// putState reports whether an earlier Append of first may have stored it,
// and the ETag of the discarded segment a write of first replaces ("" for
// none: the write must create the name).
func (l *Log) putState(first tx.Version) (mayExist bool, replace string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, mayExist = l.mu.mayExist[first]
	return mayExist, l.mu.discarded[first]
}

func (l *Log) setMayExist(first tx.Version, may bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case may && l.mu.mayExist == nil:
		l.mu.mayExist = map[tx.Version]struct{}{first: {}}
	case may:
		l.mu.mayExist[first] = struct{}{}
	default:
		delete(l.mu.mayExist, first)
	}
}

// putSegmentOnce writes key if absent, or, with replace set, if it still
// holds the object of that ETag (a discarded segment, see Append). It
// returns the stored object's ETag when it is known to hold data.
func (l *Log) putSegmentOnce(ctx context.Context, key string, data []byte, replace string, att *attempts) (string, error) {
	start := time.Now()
	in := &s3.PutObjectInput{
		Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), IfNoneMatch: aws.String("*"),
		ContentType: aws.String("application/octet-stream"),
	}
	if replace != "" {
		in.IfNoneMatch, in.IfMatch = nil, aws.String(replace)
	}
	if plantNoFence {
		in.IfNoneMatch, in.IfMatch = nil, nil
	}
	out, err := l.client.PutObject(ctx, in, l.track(att))
	l.noteRetries(att)
	l.observe(OpPut, start, err)
	if err == nil {
		return aws.ToString(out.ETag), nil
	}
	if !att.ambiguous.Load() {
		// No earlier attempt can have stored the object: a 412 means
		// another writer did, anything else is a plain failure.
		if isPreconditionFailed(err) || (replace != "" && isNotFound(err)) {
			return "", persist.ErrFenced
		}
		return "", fmt.Errorf("put s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	// An earlier attempt may have stored the object and lost its answer:
	// a 412 may be our own write, a failure may hide a success. Look.
	stored, etag, gerr := l.readBack(ctx, key, isPreconditionFailed(err))
	switch {
	case gerr == nil && sameSegment(stored, data):
		l.ambiguousSettled.Add(1)
		l.log.Info("s3log: ambiguous segment write was ours", "key", key, "attempts", att.n.Load(), "err", err)
		return "", nil // the stored bytes may differ from data (see sameSegment): not cached
	case gerr == nil && replace != "" && etag == replace && !isPreconditionFailed(err):
		// The discarded segment we meant to replace is still there: our
		// write did not happen (yet); the error stands.
	case gerr == nil:
		l.ambiguousSettled.Add(1)
		return "", persist.ErrFenced
	case isPreconditionFailed(err) && errors.Is(gerr, errNoSuchKey):
		// 412, yet S3 answers that the object is gone: a truncation or a
		// recovery deleted it, neither of which deletes the segment this
		// leader is writing. Someone else owns the log: fenced.
		return "", persist.ErrFenced
	case isPreconditionFailed(err):
		// 412, and the read-back failed too (503, a dropped connection,
		// the operation's deadline): the object may well be our own
		// earlier attempt, so this is not fencing, only a failure. The
		// Append fails and stays ambiguous (mayExist): the pipeline's
		// retry reads back again.
		return "", fmt.Errorf("put s3://%s/%s: %w; reading it back to tell our own earlier attempt from another leader's: %w", l.cfg.Bucket, key, err, gerr)
	}
	return "", fmt.Errorf("put s3://%s/%s: %w", l.cfg.Bucket, key, err)
}

// readBackRounds bounds the GetObject calls (each with the SDK's own
// retries) of one read-back after a 412: enough to ride out a burst of
// 503s or dropped connections, few enough that an outage fails the Append
// promptly (the pipeline retries it, with backoff, as a transient error).
const readBackRounds = 4

// readBack reads key after an ambiguous write. After a 412 (retry set) a
// read that failed (503, a dropped connection, a timeout) is retried with
// backoff, up to readBackRounds calls and within ctx: only a read that
// succeeds, or S3's own NoSuchKey, says what the write did. Otherwise one
// read: a failed read leaves the write's own error standing anyway.
func (l *Log) readBack(ctx context.Context, key string, retry bool) ([]byte, string, error) {
	backoff := 10 * time.Millisecond
	for round := 1; ; round++ {
		data, etag, err := l.getETag(ctx, key)
		if err == nil || errors.Is(err, errNoSuchKey) || !retry || round >= readBackRounds || ctx.Err() != nil {
			return data, etag, err
		}
		// Full jitter, as the SDK's retryer: concurrent read-backs after
		// one burst of faults do not retry in step.
		t := time.NewTimer(time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, "", err
		}
		backoff = min(2*backoff, max(l.cfg.RetryMaxBackoff, 10*time.Millisecond))
	}
}

// sameSegment reports whether stored is the segment data: the same bytes,
// or the same identity (leader id, First, Last, count). The second covers
// a claim encoded again, with a new timestamp, by a start-up retried on
// this process after its first claim timed out and landed later (the
// leader id is the process's; see the package doc, item 2).
func sameSegment(stored, data []byte) bool {
	if bytes.Equal(stored, data) {
		return true
	}
	hs, err := persist.DecodeSegmentHeader(stored)
	if err != nil {
		return false
	}
	hd, err := persist.DecodeSegmentHeader(data)
	if err != nil {
		return false
	}
	return hs.First == hd.First && hs.Last == hd.Last && hs.Count == hd.Count && bytes.Equal(hs.LeaderID, hd.LeaderID)
}

// DeleteDiscarded implements persist.Log; see the package doc, item 3a.
func (l *Log) DeleteDiscarded(ctx context.Context) error {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	if !l.mu.claimed {
		l.mu.Unlock()
		return errors.New("s3log: DeleteDiscarded before a claim was stored: only the winner of the log may delete")
	}
	firsts := slices.Sorted(maps.Keys(l.mu.discarded))
	etags := make([]string, len(firsts))
	for i, f := range firsts {
		etags[i] = l.mu.discarded[f]
	}
	belowFloor := l.mu.belowFloor
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	if len(belowFloor) > 0 {
		// Finish the interrupted truncation: nobody writes at or below the
		// floor again, so plain deletes are safe.
		if err := l.deleteKeys(ctx, belowFloor); err != nil {
			return fmt.Errorf("s3log: delete %d segments below the truncation floor: %w", len(belowFloor), err)
		}
		l.mu.Lock()
		l.mu.belowFloor = nil
		l.mu.Unlock()
	}
	if len(firsts) == 0 {
		return nil
	}
	err := l.forEachParallel(ctx, len(firsts), func(ctx context.Context, i int) error {
		key := l.segmentKey(firsts[i])
		if etags[i] == "" {
			// It vanished between the listing and the read: nothing of
			// ours to delete, and an unconditional delete could hit a
			// segment written there since.
			l.mu.Lock()
			delete(l.mu.discarded, firsts[i])
			l.mu.Unlock()
			return nil
		}
		deleted, err := l.deleteIfMatch(ctx, key, etags[i])
		if err != nil {
			return fmt.Errorf("delete discarded segment %d: %w", firsts[i], err)
		}
		if !deleted {
			l.log.Warn("s3log: a discarded segment changed since recovery (another server rewrote it); left alone", "key", key)
		}
		l.mu.Lock()
		delete(l.mu.discarded, firsts[i])
		l.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3log: %w", err)
	}
	l.log.Info("s3log: deleted the segments recovery discarded", "count", len(firsts))
	return nil
}

// deleteIfMatch deletes key if it still holds the object of that ETag. It
// reports false when the key holds another object (412); a missing key
// counts as deleted.
func (l *Log) deleteIfMatch(ctx context.Context, key, etag string) (bool, error) {
	in := &s3.DeleteObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key), IfMatch: aws.String(etag)}
	start := time.Now()
	var att attempts
	_, err := l.client.DeleteObject(ctx, in, l.track(&att))
	l.noteRetries(&att)
	if conditionalDeleteUnsupported(err) {
		l.log.Warn("s3log: the store does not implement conditional deletes; deleting a discarded segment unconditionally", "key", key)
		in.IfMatch = nil
		_, err = l.client.DeleteObject(ctx, in, l.track(&att))
	}
	if isNotFound(err) {
		err = nil
	}
	l.observe(OpDelete, start, err)
	if isPreconditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	return true, nil
}

// ReadFrom implements persist.Log.
func (l *Log) ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error) {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	picked, err := persist.SelectReadFrom(l.mu.index, after, maxBytes)
	picked = slices.Clone(picked)
	var etags []string
	if l.cache != nil {
		etags = make([]string, len(picked))
		for i, p := range picked {
			etags[i] = l.mu.etags[p.First]
		}
	}
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("s3log: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	out := make([][]byte, len(picked))
	err = l.forEachParallel(ctx, len(picked), func(ctx context.Context, i int) error {
		var data []byte
		var err error
		cached := false
		if l.cache != nil {
			data, cached = l.cache.get(picked[i].First, etags[i])
			if cached {
				if h, herr := persist.DecodeSegmentHeader(data); herr != nil || h.First != picked[i].First || h.Last != picked[i].Last {
					cached = false // a damaged copy: read S3
				}
			}
		}
		if !cached {
			var etag string
			data, etag, err = l.getETag(ctx, l.segmentKey(picked[i].First))
			if err == nil && l.cache != nil {
				l.cache.put(picked[i].First, etag, data)
			}
		}
		if errors.Is(err, errNoSuchKey) {
			return fmt.Errorf("read segment %d: %w (truncated meanwhile)", picked[i].First, persist.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read segment %d: %w", picked[i].First, err)
		}
		h, err := persist.DecodeSegmentHeader(data)
		if err != nil {
			return fmt.Errorf("read segment %d: %w", picked[i].First, err)
		}
		if h.First != picked[i].First || h.Last != picked[i].Last {
			return fmt.Errorf("read segment %d: %w: holds %d..%d, index says %d..%d",
				picked[i].First, persist.ErrCorruption, h.First, h.Last, picked[i].First, picked[i].Last)
		}
		out[i] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("s3log: read from %d: %w", after, err)
	}
	return out, nil
}

// forEachParallel runs fn(i) for i in [0, n), at most MaxInFlight at once,
// and returns the first error (cancelling the rest).
func (l *Log) forEachParallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		next     atomic.Int64
	)
	for range min(n, l.cfg.MaxInFlight) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// Truncate implements persist.Log.
func (l *Log) Truncate(ctx context.Context, upTo tx.Version) (tx.Version, error) {
	l.mu.Lock()
	if err := l.checkLocked(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	idx := l.mu.index
	n := 0
	for n < len(idx)-1 && idx[n].Last <= upTo {
		n++
	}
	// The segment kept first must be stored and follow the deleted ones
	// directly: recovery starts the run at floor+1 (package doc, item 5).
	for n > 0 && idx[n].First != idx[n-1].Last+1 {
		n--
	}
	if n == 0 {
		oldest := persist.Recovery{Segments: idx}.OldestRetained()
		l.mu.Unlock()
		return oldest, nil
	}
	floor := idx[n-1].Last
	doomed := make([]string, n)
	for i, s := range idx[:n] {
		doomed[i] = l.segmentKey(s.First)
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	// The floor first, durably: from now on a recovery ignores everything
	// at or below it, whatever subset of it the deletes leave.
	if err := l.putFloor(ctx, floor); err != nil {
		return 0, fmt.Errorf("s3log: truncate to %d: %w", upTo, err)
	}
	l.mu.Lock()
	i, _ := slices.BinarySearchFunc(l.mu.index, floor+1, func(s persist.SegmentInfo, first tx.Version) int {
		return cmp.Compare(s.First, first)
	})
	l.mu.index = slices.Delete(l.mu.index, 0, i)
	oldest := persist.Recovery{Segments: l.mu.index}.OldestRetained()
	l.mu.Unlock()
	if err := l.deleteKeys(ctx, doomed); err != nil {
		return 0, fmt.Errorf("s3log: truncate to %d: %w", upTo, err)
	}
	// Older floors are redundant now (recovery takes the highest).
	floors, err := l.listFloors(ctx)
	if err != nil {
		return 0, fmt.Errorf("s3log: truncate to %d: %w", upTo, err)
	}
	var old []string
	for _, f := range floors {
		if f < floor {
			old = append(old, l.floorKey(f))
		}
	}
	if err := l.deleteKeys(ctx, old); err != nil {
		return 0, fmt.Errorf("s3log: truncate to %d: delete older floors: %w", upTo, err)
	}
	return oldest, nil
}

// putFloor stores the truncation floor marker of f (an empty object;
// rewriting it is harmless).
func (l *Log) putFloor(ctx context.Context, f tx.Version) error {
	start := time.Now()
	var att attempts
	key := l.floorKey(f)
	_, err := l.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(nil), ContentLength: aws.Int64(0), ContentType: aws.String("application/octet-stream")},
		l.track(&att))
	l.noteRetries(&att)
	l.observe(OpPut, start, err)
	if err != nil {
		return fmt.Errorf("store truncation floor s3://%s/%s: %w", l.cfg.Bucket, key, err)
	}
	return nil
}

// deleteBatchMax is S3's limit on keys per DeleteObjects request.
const deleteBatchMax = 1000

// deleteKeys deletes keys in DeleteObjects batches. S3 promises no order
// within a batch: callers must not depend on one (see Truncate's floor).
func (l *Log) deleteKeys(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), deleteBatchMax)]
		keys = keys[len(batch):]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		start := time.Now()
		var att attempts
		out, err := l.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(l.cfg.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}}, l.track(&att))
		l.noteRetries(&att)
		if err == nil && len(out.Errors) > 0 {
			e := out.Errors[0]
			err = fmt.Errorf("%d of %d keys not deleted, first %s: %s %s", len(out.Errors), len(batch),
				aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		l.observe(OpDelete, start, err)
		if err != nil {
			return fmt.Errorf("delete objects in s3://%s: %w", l.cfg.Bucket, err)
		}
	}
	return nil
}

// LoadPolicies implements persist.Log.
func (l *Log) LoadPolicies(ctx context.Context) (map[string]tx.Version, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	data, err := l.get(ctx, l.policyKey)
	if errors.Is(err, errNoSuchKey) {
		return map[string]tx.Version{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("s3log: load policies: %w", err)
	}
	policies, err := persist.DecodePolicies(data)
	if err != nil {
		return nil, fmt.Errorf("s3log: load policies from %s: %w", l.policyKey, err)
	}
	return policies, nil
}

// StorePolicies implements persist.Log: one PUT overwrites retention.json
// (S3 PUTs are atomic: readers see the old or the new document).
func (l *Log) StorePolicies(ctx context.Context, policies map[string]tx.Version) error {
	if err := l.check(); err != nil {
		return err
	}
	data, err := persist.EncodePolicies(policies)
	if err != nil {
		return fmt.Errorf("s3log: store policies: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.OperationTimeout)
	defer cancel()
	start := time.Now()
	var att attempts
	_, err = l.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(l.policyKey),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String("application/json")},
		l.track(&att))
	l.noteRetries(&att)
	l.observe(OpPut, start, err)
	if err != nil {
		return fmt.Errorf("s3log: store policies to s3://%s/%s: %w", l.cfg.Bucket, l.policyKey, err)
	}
	return nil
}

// Close implements persist.Log: later calls fail. Idle connections are
// reaped by IdleConnTimeout (the SDK's buildable client offers no way to
// close its pool).
func (l *Log) Close() error {
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
	if l.cache != nil {
		l.cache.close()
	}
	return nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// conditionalDeleteUnsupported reports an answer by which a store refuses
// If-Match on DeleteObject itself (S3-compatible stores that predate
// conditional deletes), as opposed to a failed condition (412).
func conditionalDeleteUnsupported(err error) bool {
	switch apiCode(err) {
	case "NotImplemented", "InvalidArgument", "InvalidRequest":
		return true
	}
	return httpStatus(err) == http.StatusNotImplemented
}

func isPreconditionFailed(err error) bool {
	return httpStatus(err) == http.StatusPreconditionFailed || apiCode(err) == "PreconditionFailed"
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	return errors.As(err, &nsk) || apiCode(err) == "NoSuchKey" || httpStatus(err) == http.StatusNotFound
}
