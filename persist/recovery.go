package persist

import (
	"bytes"
	"fmt"

	"github.com/weaseldb/weaseldb/tx"
)

// StoredSegment is what a backend found under one segment name at recovery,
// input to PlanRecovery.
type StoredSegment struct {
	// First is the version parsed from the segment's name.
	First tx.Version
	// Bytes is the stored size.
	Bytes int64
	// Header is the decoded header; meaningful only when Err is nil.
	Header SegmentHeader
	// Err is the validation failure (DecodeSegmentHeader's error, or an
	// error wrapping ErrCorruption), nil for a sound segment.
	Err error
}

// PlanRecovery applies the recovery rules of the package doc to the stored
// segments, which must be sorted by First (names sort that way). It is shared
// by all backends so that they agree exactly:
//
//  1. The run starts at the oldest segment and grows while each segment's
//     First is the previous one's Last+1.
//  2. A segment whose First lies inside the run (an overlap) is discarded
//     alone and the run goes on: it is an orphan of a deposed leader, whose
//     pipelined write of a later segment landed after the new leader's
//     claim under a name the new leader's segments do not use (found by
//     tests/s3fault; stopping there lost the new leader's acknowledged
//     segments). Segments of one run never overlap, and each name holds one
//     segment, so the run is still unique. The first segment after a gap
//     and everything after it are discarded: they were never acknowledged.
//  3. A leader term never returns: once a segment of another leader follows
//     leader X's segments in the run, a later segment of X is not part of
//     the log, even where it fits the versions. It is an orphan of X's
//     pipelined writes that happened to start exactly at a boundary of the
//     new leader's segments (so the new leader's write of that name failed
//     and it was deposed there); its transactions were resolved against X's
//     state, not against the commits of the leader that followed X, so
//     taking them would break serializability. It is treated as a gap: it
//     and everything after it are discarded (nothing after it can have been
//     acknowledged: the leader whose name it took was fenced there).
//  4. A segment that failed validation, or whose header disagrees with its
//     name, is discarded if it is the last stored segment (a torn tail);
//     anywhere else it is corruption and PlanRecovery fails with an error
//     wrapping ErrCorruption, because an acknowledged segment may be lost.
//
// Discarded entries carry Last == First when the header was unreadable. The
// backend deletes the discarded segments and logs them.
func PlanRecovery(stored []StoredSegment) (Recovery, error) {
	var rec Recovery
	var leader []byte                  // leader id of the run's last segment
	succeeded := make(map[string]bool) // leader ids another leader followed
	for i, s := range stored {
		if i > 0 && stored[i-1].First >= s.First {
			return Recovery{}, fmt.Errorf("persist: recovery: segments not sorted: %d after %d", s.First, stored[i-1].First)
		}
		if n := len(rec.Segments); n > 0 && s.First <= rec.Segments[n-1].Last {
			rec.Discarded = append(rec.Discarded, s.info())
			continue
		}
		if n := len(rec.Segments); n > 0 && s.First != rec.Segments[n-1].Last+1 {
			for _, d := range stored[i:] {
				rec.Discarded = append(rec.Discarded, d.info())
			}
			return rec, nil
		}
		err := s.Err
		if err == nil && s.Header.First != s.First {
			err = fmt.Errorf("%w: segment named %d holds versions %d..%d", ErrCorruption, s.First, s.Header.First, s.Header.Last)
		}
		if err != nil {
			if i == len(stored)-1 {
				rec.Discarded = append(rec.Discarded, s.info())
				return rec, nil
			}
			return Recovery{}, fmt.Errorf("persist: recovery: segment %d of %d (not the last): %w", s.First, len(stored), err)
		}
		if n := len(rec.Segments); n > 0 && !bytes.Equal(s.Header.LeaderID, leader) {
			if succeeded[string(s.Header.LeaderID)] {
				for _, d := range stored[i:] {
					rec.Discarded = append(rec.Discarded, d.info())
				}
				return rec, nil
			}
			succeeded[string(leader)] = true
		}
		leader = s.Header.LeaderID
		rec.Segments = append(rec.Segments, SegmentInfo{First: s.Header.First, Last: s.Header.Last, Bytes: s.Bytes})
	}
	return rec, nil
}

func (s StoredSegment) info() SegmentInfo {
	last := s.First
	if s.Err == nil && s.Header.First == s.First {
		last = s.Header.Last
	}
	return SegmentInfo{First: s.First, Last: last, Bytes: s.Bytes}
}

// SelectReadFrom picks, from the contiguous run segs (oldest first), the
// segments ReadFrom(after, maxBytes) returns: those holding versions greater
// than after, oldest first, starting with the one holding after+1 (none if
// that one is not stored yet), stopping at a gap and before the total would
// exceed maxBytes — but always at least one if any qualifies. It reports
// ErrNotFound (wrapped) if version after+1 is older than the oldest segment.
// Backends share it so that paging behaves identically everywhere.
func SelectReadFrom(segs []SegmentInfo, after tx.Version, maxBytes int) ([]SegmentInfo, error) {
	if len(segs) == 0 {
		return nil, nil
	}
	if oldest := segs[0].First; oldest > 0 && after+1 < oldest {
		return nil, fmt.Errorf("%w: version %d truncated (oldest stored segment starts at %d)", ErrNotFound, after+1, oldest)
	}
	// Binary search for the first segment with Last > after.
	lo, hi := 0, len(segs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if segs[mid].Last <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(segs) && segs[lo].First > after+1 {
		// after+1 is not stored yet (an Append still in flight left a
		// gap): nothing can be returned in order.
		return nil, nil
	}
	var total int64
	end := lo
	for end < len(segs) {
		s := segs[end]
		if end > lo && (s.First != segs[end-1].Last+1 || total+s.Bytes > int64(maxBytes)) {
			break
		}
		total += s.Bytes
		end++
	}
	return segs[lo:end], nil
}
