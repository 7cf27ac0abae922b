// Package persist is the only door from WeaselDB to durable storage. The
// commit pipeline drives a Log; backends (disk, s3, memlog) implement it and
// know nothing of the engine.
//
// # Segments
//
// The log is a sequence of segments. Each segment holds a contiguous run of
// versions [First, Last] and is stored under its First version (S3 key
// "<prefix>/log/<First as 20 digits>", disk: a frame in a rolled log file, see persist/disk).
// A backend stores a segment only if no segment of that name exists yet; that
// is the fencing between two leaders: whoever writes the name first wins, the
// other gets ErrFenced.
//
// The genesis segment (First 0, Last 0, no transactions) is written by the
// first leader of an empty log. Every later leader claims leadership by
// writing a segment holding one transaction with no request id and no
// operations at version recovered-last+1. Either way the old leader, if it
// is still alive, collides with the new leader's name on its next write and
// learns it is deposed.
//
// # Recovery
//
// Recover lists the segments and returns the longest contiguous run starting
// at the oldest one (each segment's First is the previous one's Last+1).
// Segments after a gap, and a torn or corrupt last segment, were never
// acknowledged; they are reported in Recovery.Discarded. A corrupt segment in
// the middle of the run is an error (ErrCorruption), never skipped.
//
// Recover deletes nothing another server could still need: a server that
// recovers has not won the log yet, and a live leader may be about to fill
// the very gap it saw (its segment at the gap was in flight). The discarded
// segments are deleted by DeleteDiscarded, which the engine calls only after
// its claim segment was stored by conditional write: from then on this
// server owns the name after the run, and the leader that was writing there
// is fenced and acknowledges nothing past it (in-order release), so what
// follows the gap is provably unacknowledged. A claim whose name is held by
// a discarded segment (a torn tail, or the orphan of a returned leader term)
// replaces that exact object conditionally (see Log.Append).
//
// # Segment format
//
// A segment is one self-contained byte string: a fixed 42-byte header, the
// leader id, and the body. Integers in the header are little-endian.
//
//	 0       4       6       8                               16
//	+-------+-------+-------+-------------------------------+
//	| magic | fmt   | zero  | xxhash64 of bytes [16, end)   |
//	| WSEG  | u16=1 | u16   |                               |
//	+-------+-------+-------+-------------------------------+
//	16                              24                              32
//	+-------------------------------+-------------------------------+
//	| first version (u64)           | last version (u64)            |
//	+-------------------------------+-------------------------------+
//	32              36              40      42
//	+---------------+---------------+-------+----------------+------------+
//	| count (u32)   | body len (u32)| id len| leader id ...  | body ...   |
//	|               |               | (u16) | (id len bytes) | (body len) |
//	+---------------+---------------+-------+----------------+------------+
//
// The checksum covers everything after itself, so one hash protects the
// header fields, the leader id and the body; magic and format version are
// compared exactly. The encoded length must be exactly 42 + id len + body
// len: a torn (short) or padded segment is corruption.
//
// The body is count records, one per transaction, in version order. Versions
// are not stored: record i has version first+i (segments are contiguous, and
// the header's first/last/count must agree: count == last-first+1, or the
// genesis segment first == last == count == 0). Each record is
//
//	+-----------------+------------+---------------------+-----------+--------+
//	| request id len  | request id | timestamp delta     | op count  | ops... |
//	| (uvarint)       | (bytes)    | (zigzag varint, ns) | (uvarint) |        |
//	+-----------------+------------+---------------------+-----------+--------+
//
// where the timestamp delta is against the previous record's timestamp (the
// first record's against 0), so a batch written within a millisecond costs
// two or three bytes per timestamp instead of nine. Each op is
//
//	+---------+-----------+-----+-----------------------------------------+
//	| type u8 | key len   | key | write: value len (uvarint) + value      |
//	| 1,2,3   | (uvarint) |     | delete: nothing; range_delete: end len  |
//	|         |           |     | (uvarint) + end                         |
//	+---------+-----------+-----+-----------------------------------------+
//
// Rejected alternatives: explicit per-transaction versions (eight bytes of
// redundancy each, and contiguity is checked from the header anyway), and a
// checksum per record (a segment is written and read whole, so one hash is
// enough and cheaper).
package persist

import (
	"context"
	"errors"

	"github.com/weaseldb/weaseldb/tx"
)

var (
	// ErrFenced is returned by Append when a segment with the same First
	// already exists: another leader owns the log from there on.
	ErrFenced = errors.New("persist: segment exists: fenced by another leader")
	// ErrCorruption marks damaged stored data (bad checksum, bad framing).
	// Test with errors.Is.
	ErrCorruption = errors.New("persist: corruption")
	// ErrNotFound is returned by ReadFrom when the versions asked for were
	// truncated away.
	ErrNotFound = errors.New("persist: not found")
	// ErrDamaged marks a stored log found damaged behind the server's back
	// (a log file deleted, cut short or replaced while the server ran), or
	// a log marked so by an earlier run: acknowledged segments may be
	// missing, so the server must stop acknowledging, and a restart must
	// refuse rather than reuse their versions. Never retried. Test with
	// errors.Is.
	ErrDamaged = errors.New("persist: log damaged")
)

// DamageReporter is implemented by backends that check their stored log
// between writes (persist/disk). Damage returns nil while the log is sound,
// else an error wrapping ErrDamaged that says what happened. It is one
// atomic load: the engine asks on every commit it admits.
type DamageReporter interface {
	Damage() error
}

// SegmentInfo names one stored segment.
type SegmentInfo struct {
	First tx.Version
	Last  tx.Version
	Bytes int64
}

// Recovery is what Recover found.
type Recovery struct {
	// Segments is the contiguous run, oldest first. Empty for a new log.
	Segments []SegmentInfo
	// Discarded lists segments cut off because they followed a gap or were
	// torn at the tail; each was logged, and is deleted by DeleteDiscarded.
	Discarded []SegmentInfo
}

// Last returns the last recovered version (0 for an empty log).
func (r Recovery) Last() tx.Version {
	if len(r.Segments) == 0 {
		return 0
	}
	return r.Segments[len(r.Segments)-1].Last
}

// OldestRetained returns N such that every version > N is still stored.
func (r Recovery) OldestRetained() tx.Version {
	if len(r.Segments) == 0 {
		return 0
	}
	first := r.Segments[0].First
	if first == 0 { // the genesis segment: nothing was ever truncated
		return 0
	}
	return first - 1
}

// Log is durable storage for segments and retention policies.
//
// Recover must be called once before any other method. Append may be called
// by several goroutines at once (the pipeline keeps up to max-in-flight
// writes outstanding and releases them in version order itself). All other
// methods are safe for concurrent use with Append.
type Log interface {
	// Recover scans the stored log; see the package doc. It deletes
	// nothing that another server sharing the storage could need; what it
	// discards stays stored until DeleteDiscarded. Calling it again (a
	// retried start-up) starts over.
	Recover(ctx context.Context) (Recovery, error)

	// DeleteDiscarded deletes the segments the last Recover discarded. Call
	// it only after this Log's claim (its first Append after Recover)
	// succeeded: only the winner of the log may delete. It fails, deleting
	// nothing, when no Append has succeeded since Recover. A segment that
	// changed since Recover (another server replaced it) is left alone.
	DeleteDiscarded(ctx context.Context) error

	// Append stores one encoded segment (see EncodeSegment) durably: when it
	// returns nil the segment survives a crash of the process and of the
	// machine. It returns ErrFenced if a segment with the same First exists,
	// except a segment the last Recover discarded and that is still exactly
	// what Recover found: that one is replaced, atomically with the check
	// (the claim over a discarded segment that holds the claim's name). The
	// Log does not keep data after Append returns.
	Append(ctx context.Context, data []byte) error

	// ReadFrom returns encoded segments holding versions greater than
	// after, oldest first, stopping once maxBytes have been gathered (at
	// least one segment is returned if any exists). It returns ErrNotFound
	// if version after+1 was truncated away.
	//
	// Precisely (persist.SelectReadFrom, shared by all backends): the first
	// segment returned holds after+1 (so the result may start mid-segment;
	// the caller skips versions <= after); the result is contiguous, stops
	// at a gap left by an Append still in flight, and adds a segment only
	// while the total stays <= maxBytes, except the first. Nothing is
	// returned if after+1 is not stored yet.
	ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error)

	// Truncate deletes every segment whose Last <= upTo, except the newest
	// segment, which is always kept so that the log remembers its last
	// version. It returns the segments that remain's OldestRetained value.
	Truncate(ctx context.Context, upTo tx.Version) (tx.Version, error)

	// LoadPolicies returns the stored retention policies (policy id →
	// version); an empty map when none were stored.
	LoadPolicies(ctx context.Context) (map[string]tx.Version, error)

	// StorePolicies durably replaces the stored retention policies.
	StorePolicies(ctx context.Context, policies map[string]tx.Version) error

	// Close releases resources. In-flight calls may fail afterwards.
	Close() error
}

// Shared is a Log that several servers may open at once (S3): one leader
// appends, replicas follow what it appends without writing anything.
type Shared interface {
	Log

	// Observe is Recover for a replica: it lists and validates the stored
	// log and indexes its contiguous run (PlanRecovery), but deletes and
	// writes nothing, since another server owns the log. Like Recover it
	// must come before the other methods; Recover may follow it later
	// (when the replica takes over).
	Observe(ctx context.Context) (Recovery, error)

	// Poll reads the segments stored after the indexed run, in order, while
	// each continues the run (First == previous Last+1) and accept returns
	// true for its header; it adds those to the index and returns their
	// bytes (at most about maxBytes, at least one when one qualifies). It
	// also forgets indexed segments deleted by the leader's truncation.
	// Poll stops at the first gap: a segment still in flight fills it later.
	Poll(ctx context.Context, maxBytes int, accept func(SegmentHeader) bool) ([][]byte, error)

	// OldestRetained is Recovery.OldestRetained of the indexed run as Poll
	// last saw it (it follows the leader's truncation).
	OldestRetained() tx.Version
}
