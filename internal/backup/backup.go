// Package backup is `weaseldb backup`: a continuous backup through the public
// API. It follows GET /v1/subscribe (durable transactions only, resuming
// with Last-Event-ID) and writes what it receives as a disk-format log
// (persist/disk), so that restoring is starting a server on it:
//
//	weaseldb backup --url http://db:8080 --to /backup/weaseldb
//	weaseldb --data-dir /backup/weaseldb        # restore = start on it
//
// How it works:
//
//  1. Open the backup directory as a disk log (taking its lock: no server
//     can start on it while the backup runs) and recover it; its last
//     version is where the stream resumes (0 for a new backup, which must
//     start at the beginning of the server's log).
//  2. Subscribe after that version. Transactions are gathered and written
//     as one segment (one fdatasync) at each checkpoint event, when a
//     segment reaches its size bounds, and before a transaction of another
//     leader term (a segment carries one leader id, and recovery relies on
//     the order of terms). The versions, request ids, operations and leader
//     ids are the server's; timestamps keep the millisecond precision the
//     API gives.
//  3. On SIGTERM the transactions received are written and the backup
//     exits; the next run resumes after them. Dropped connections and
//     server restarts are reconnected by the client (Last-Event-ID).
//  4. With a retention policy id, the backup keeps a policy on the server
//     at the version it has written, so that the server never truncates
//     what the backup has not got yet.
//
// The backup refuses to go on when the stream does not continue its log: a
// gap, a position the server no longer keeps (410: the backup fell behind
// retention) or one the server never reached (the backup belongs to
// another log, or the server lost acknowledged commits).
package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/weaseldb/weaseldb/client"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/tx"
)

// Options configure Run.
type Options struct {
	URL string // the server's base URL, http://host:port
	Dir string // the backup directory (a disk log)
	// Token is the bearer token for the server (needed for the retention
	// policy, and for reads when the server authenticates them).
	Token string
	// Policy, if not empty, is a retention policy id the backup keeps at
	// the version it has written.
	Policy string
	// PolicyInterval is how often the policy is moved forward; zero means
	// 10s.
	PolicyInterval time.Duration
	// SegmentTxnsMax and SegmentBytesMax bound one written segment; zero
	// means 10,000 transactions and 8 MiB.
	SegmentTxnsMax  int
	SegmentBytesMax int
	Logger          *slog.Logger
}

// Run backs up until ctx ends (then it writes what it received and returns
// nil) or the stream cannot continue the backup (an error).
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PolicyInterval <= 0 {
		o.PolicyInterval = 10 * time.Second
	}
	if o.SegmentTxnsMax <= 0 {
		o.SegmentTxnsMax = 10_000
	}
	if o.SegmentBytesMax <= 0 {
		o.SegmentBytesMax = 8 << 20
	}
	log, err := disk.Open(o.Dir, disk.Options{Logger: o.Logger})
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	defer log.Close()
	rec, err := log.Recover(context.Background())
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	b := &backup{o: o, log: log, written: rec.Last()}
	hc := &http.Client{Transport: &bearer{token: o.Token, rt: http.DefaultTransport}}
	b.c = client.New(o.URL, client.WithHTTPClient(hc), client.WithLogger(o.Logger))
	o.Logger.Info("backup starting", "url", o.URL, "dir", o.Dir, "after", uint64(b.written))
	return b.run(ctx)
}

type backup struct {
	o       Options
	log     *disk.Log
	c       *client.Client
	written tx.Version // last version durable in the backup

	pending      []tx.Transaction
	pendingBytes int
	leader       string // leader id of the pending transactions
	policyAt     time.Time
	policyV      tx.Version
	reportedAt   time.Time
}

func (b *backup) run(ctx context.Context) error {
	after := uint64(b.written)
	sub := b.c.Subscribe(ctx, client.SubscribeOptions{After: &after})
	defer sub.Close()
	b.holdPolicy(ctx, true)
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return b.finish()
			}
			return b.refuse(err)
		}
		switch ev.Kind {
		case client.EventTransaction:
			if err := b.add(ev.Transaction); err != nil {
				return err
			}
		case client.EventCheckpoint:
			if err := b.flush(); err != nil {
				return err
			}
			b.holdPolicy(ctx, false)
		}
	}
}

// finish writes what was received before an ordered stop.
func (b *backup) finish() error {
	if err := b.flush(); err != nil {
		return err
	}
	b.o.Logger.Info("backup stopped", "version", uint64(b.written))
	return nil
}

func (b *backup) refuse(err error) error {
	ferr := b.flush() // what arrived before the error is sound
	switch {
	case errors.Is(err, client.ErrGone):
		err = fmt.Errorf("the server no longer keeps the versions after %d (truncated by retention): this backup cannot continue; start a new one in an empty directory, and keep a retention policy for it (--retention-policy): %w", b.written, err)
	case errors.Is(err, client.ErrFutureVersion):
		err = fmt.Errorf("the backup holds versions up to %d, which the server never reached: it is a backup of another log, or the server lost acknowledged commits: %w", b.written, err)
	}
	return errors.Join(err, ferr)
}

// add gathers one transaction, writing the pending segment first when this
// one is of another leader term or the segment is full.
func (b *backup) add(t client.Transaction) error {
	want := b.written + tx.Version(len(b.pending)) + 1
	if tx.Version(t.Version) != want {
		return fmt.Errorf("stream gave version %d where %d was due: refusing a gap in the backup", t.Version, want)
	}
	if len(b.pending) > 0 && (t.LeaderID != b.leader || len(b.pending) >= b.o.SegmentTxnsMax || b.pendingBytes >= b.o.SegmentBytesMax) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.leader = t.LeaderID
	txn := tx.Transaction{
		Version:           tx.Version(t.Version),
		RequestID:         []byte(t.RequestID),
		TimestampUnixNano: t.Timestamp.UnixNano(),
		Operations:        make([]tx.Operation, len(t.Operations)),
	}
	size := len(t.RequestID) + 16
	for i, op := range t.Operations {
		o := tx.Operation{Key: op.Key, Value: op.Value, End: op.End}
		switch op.Type {
		case client.OpWrite:
			o.Type = tx.OpWrite
		case client.OpDelete:
			o.Type = tx.OpDelete
		case client.OpRangeDelete:
			o.Type = tx.OpRangeDelete
		default:
			return fmt.Errorf("version %d: operation type %q", t.Version, op.Type)
		}
		txn.Operations[i] = o
		size += len(op.Key) + len(op.Value) + len(op.End) + 8
	}
	b.pending = append(b.pending, txn)
	b.pendingBytes += size
	return nil
}

// flush writes the pending transactions as one segment.
func (b *backup) flush() error {
	if len(b.pending) == 0 {
		return nil
	}
	seg := persist.EncodeSegment(nil, []byte(b.leader), b.pending)
	first, last := b.pending[0].Version, b.pending[len(b.pending)-1].Version
	if err := b.log.Append(context.Background(), seg); err != nil {
		return fmt.Errorf("write versions %d..%d: %w", first, last, err)
	}
	b.written = last
	if time.Since(b.reportedAt) >= 10*time.Second {
		b.reportedAt = time.Now()
		b.o.Logger.Info("backup progress", "version", uint64(last))
	}
	clear(b.pending)
	b.pending = b.pending[:0]
	b.pendingBytes = 0
	return nil
}

// holdPolicy moves the retention policy to the written version, at most
// every PolicyInterval (always when now is set). Failures are logged: the
// backup goes on, but the server may truncate what it has not got.
func (b *backup) holdPolicy(ctx context.Context, now bool) {
	if b.o.Policy == "" || (!now && time.Since(b.policyAt) < b.o.PolicyInterval) || (!now && b.written == b.policyV) {
		return
	}
	b.policyAt = time.Now()
	if _, err := b.c.PutPolicy(ctx, b.o.Policy, uint64(b.written)); err != nil {
		b.o.Logger.Warn("backup: could not move its retention policy", "policy", b.o.Policy, "version", uint64(b.written), "err", err)
		return
	}
	b.policyV = b.written
	b.o.Logger.Info("backup progress", "version", uint64(b.written), "policy", b.o.Policy)
}

// bearer adds the Authorization header.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token == "" {
		return b.rt.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}
