package httpapi

import (
	"strconv"
	"sync"

	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// eventCache holds the SSE text of recent segments, encoded once and shared
// by every subscriber without a key filter. For such a stream every event is
// the same bytes: its prev_version is always version-1, because the stream
// starts right after its cursor and skips nothing. So N subscribers cost one
// encoding and N copies, not N encodings — the difference between a
// subscriber costing a memcpy and costing a JSON encoder run per event.
//
// The cache is bounded by bytes; entries are evicted oldest first. A segment
// is identified by its First version: a valid log has one segment per First.
type eventCache struct {
	maxBytes int

	mu      sync.Mutex
	entries map[tx.Version]*encodedSegment // guarded by mu
	order   []tx.Version                   // insertion order, guarded by mu
	bytes   int                            // guarded by mu
}

// encodedSegment is the SSE text of one segment. Immutable once built.
type encodedSegment struct {
	first, last tx.Version
	text        []byte
	// offsets[i] is where the event of version first+i starts in text;
	// offsets[count] == len(text).
	offsets []int
}

func newEventCache(maxBytes int) *eventCache {
	return &eventCache{maxBytes: maxBytes, entries: make(map[tx.Version]*encodedSegment)}
}

// get returns the encoded events of seg, encoding it on first use.
func (c *eventCache) get(seg []byte) (*encodedSegment, error) {
	hdr, err := persist.DecodeSegmentHeader(seg)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[hdr.First]; ok && e.last == hdr.Last {
		return e, nil
	}
	// Encoding under the lock makes concurrent subscribers wait for the one
	// encoding instead of each doing it.
	e, err := encodeSegmentEvents(seg)
	if err != nil {
		return nil, err
	}
	c.entries[e.first] = e
	c.order = append(c.order, e.first)
	c.bytes += len(e.text)
	for c.bytes > c.maxBytes && len(c.order) > 1 {
		old := c.order[0]
		c.order = c.order[1:]
		if victim, ok := c.entries[old]; ok {
			c.bytes -= len(victim.text)
			delete(c.entries, old)
		}
	}
	return e, nil
}

// encodeSegmentEvents encodes every transaction of seg as an SSE event with
// prev_version = version-1.
func encodeSegmentEvents(seg []byte) (*encodedSegment, error) {
	var r persist.SegmentReader
	hdr, err := r.Reset(seg)
	if err != nil {
		return nil, err
	}
	e := &encodedSegment{first: hdr.First, last: hdr.Last, offsets: make([]int, 0, hdr.Count+1)}
	for t, ok := r.Next(); ok; t, ok = r.Next() {
		e.offsets = append(e.offsets, len(e.text))
		e.text = appendEvent(e.text, t, t.Version-1, hdr.LeaderID)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	e.offsets = append(e.offsets, len(e.text))
	return e, nil
}

// appendEvent appends one SSE transaction event.
func appendEvent(dst []byte, t *tx.Transaction, prev tx.Version, leaderID []byte) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, uint64(t.Version), 10)
	dst = append(dst, "\nevent: transaction\ndata: "...)
	dst = jsonstream.AppendTransactionEvent(dst, t, prev, leaderID)
	return append(dst, "\n\n"...)
}

// after returns the text of the events with versions above v.
func (e *encodedSegment) after(v tx.Version) []byte {
	if v < e.first {
		return e.text
	}
	i := int(v - e.first + 1)
	if i >= len(e.offsets) {
		return nil
	}
	return e.text[e.offsets[i]:]
}
