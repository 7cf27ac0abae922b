package s3log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cespare/xxhash/v2"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// The recovery checkpoint ("<prefix>/recovery-checkpoint") remembers the
// headers of the run the last Recover found, so that the next Recover
// reads only the segments written since: it still lists every segment
// name (1,000 per request), but GETs a segment only when the checkpoint
// does not know it with the same size and ETag. Segments are immutable
// (If-None-Match on every PUT, one PUT per name), so a name listed with
// the ETag (the MD5 of a single-part PUT's bytes) and size the checkpoint
// recorded holds the bytes the checkpoint's header was read from. A
// segment truncated away since simply is not listed any more. A missing,
// unreadable or damaged checkpoint only costs the full read of every
// segment, as before; so does a store that lists no ETags.
//
// Rejected: trusting names alone (a log deleted and rewritten under the
// same prefix would be read with stale headers), and listing only after
// the checkpoint's last name (truncation and orphans below it would go
// unseen).
//
// Format, text: a first line "weaseldb-s3log-checkpoint 1", then
// "L <leader id hex>" lines (numbered from 0 in order), then one
// "S <first> <last> <count> <bytes> <etag> <leader number>" line per
// segment, then "X <xxhash64 hex of every byte before this line>".

const checkpointMagic = "weaseldb-s3log-checkpoint 1"

// listedSegment is one segment name as listed, with its ETag.
type listedSegment struct {
	persist.SegmentInfo
	etag string
}

type checkpointEntry struct {
	header persist.SegmentHeader
	etag   string
}

func (l *Log) checkpointKey() string { return l.cfg.keyPrefix() + "recovery-checkpoint" }

// loadCheckpoint returns the checkpoint's segments by First; empty when
// there is none or it cannot be used (logged).
func (l *Log) loadCheckpoint(ctx context.Context) map[tx.Version]checkpointEntry {
	data, err := l.get(ctx, l.checkpointKey())
	if err == errNoSuchKey {
		return nil
	}
	if err == nil {
		var out map[tx.Version]checkpointEntry
		if out, err = decodeCheckpoint(data); err == nil {
			return out
		}
	}
	l.log.Warn("s3log: recovery checkpoint unusable; reading every segment", "key", l.checkpointKey(), "err", err)
	return nil
}

func decodeCheckpoint(data []byte) (map[tx.Version]checkpointEntry, error) {
	i := bytes.LastIndex(data, []byte("\nX "))
	if i < 0 {
		return nil, fmt.Errorf("%w: checkpoint without checksum", persist.ErrCorruption)
	}
	want := strings.TrimSpace(string(data[i+3:]))
	if got := strconv.FormatUint(xxhash.Sum64(data[:i+1]), 16); got != want {
		return nil, fmt.Errorf("%w: checkpoint checksum %s, want %s", persist.ErrCorruption, got, want)
	}
	sc := bufio.NewScanner(bytes.NewReader(data[:i+1]))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() || sc.Text() != checkpointMagic {
		return nil, fmt.Errorf("%w: checkpoint: bad first line", persist.ErrCorruption)
	}
	var leaders [][]byte
	out := map[tx.Version]checkpointEntry{}
	for n := 2; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		bad := func() (map[tx.Version]checkpointEntry, error) {
			return nil, fmt.Errorf("%w: checkpoint line %d: %q", persist.ErrCorruption, n, sc.Text())
		}
		switch {
		case len(f) == 2 && f[0] == "L":
			id, err := hex.DecodeString(f[1])
			if err != nil {
				return bad()
			}
			leaders = append(leaders, id)
		case len(f) == 7 && f[0] == "S":
			var v [5]uint64
			for k, s := range []string{f[1], f[2], f[3], f[4], f[6]} {
				var err error
				if v[k], err = strconv.ParseUint(s, 10, 64); err != nil {
					return bad()
				}
			}
			if v[4] >= uint64(len(leaders)) || v[1] < v[0] || v[2] > 1<<32-1 {
				return bad()
			}
			out[tx.Version(v[0])] = checkpointEntry{
				header: persist.SegmentHeader{First: tx.Version(v[0]), Last: tx.Version(v[1]), Count: uint32(v[2]), Bytes: int(v[3]), LeaderID: leaders[v[4]]},
				etag:   f[5],
			}
		default:
			return bad()
		}
	}
	return out, sc.Err()
}

func encodeCheckpoint(run []persist.SegmentHeader, etags map[tx.Version]string) []byte {
	var b bytes.Buffer
	b.WriteString(checkpointMagic + "\n")
	leaders := map[string]int{}
	for _, h := range run {
		if _, ok := leaders[string(h.LeaderID)]; !ok {
			leaders[string(h.LeaderID)] = len(leaders)
			fmt.Fprintf(&b, "L %s\n", hex.EncodeToString(h.LeaderID))
		}
	}
	for _, h := range run {
		etag := etags[h.First]
		if etag == "" || strings.ContainsAny(etag, " \n") {
			etag = "-" // never matches a listing: read again next time
		}
		fmt.Fprintf(&b, "S %d %d %d %d %s %d\n", h.First, h.Last, h.Count, h.Bytes, etag, leaders[string(h.LeaderID)])
	}
	fmt.Fprintf(&b, "X %s\n", strconv.FormatUint(xxhash.Sum64(b.Bytes()), 16))
	return b.Bytes()
}

// storeCheckpoint replaces the checkpoint. Best effort: a failure costs the
// next recovery time, not correctness (logged).
func (l *Log) storeCheckpoint(ctx context.Context, data []byte) {
	start := time.Now()
	var att attempts
	_, err := l.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(l.cfg.Bucket), Key: aws.String(l.checkpointKey()),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}, l.track(&att))
	l.noteRetries(&att)
	l.observe(OpPut, start, err)
	if err != nil {
		l.log.Warn("s3log: storing the recovery checkpoint failed; the next recovery reads every segment", "key", l.checkpointKey(), "err", err)
	}
}
