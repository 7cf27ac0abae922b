// Package statusruns keeps the part of WeaselDB's status window (the
// request ids committed in the last 24 hours or 100 million versions) that
// does not fit in memory, on local disk beside the log.
//
// The index is a list of immutable runs. A run holds the ids committed in
// one contiguous range of versions [First, Last], as 32-byte entries (the
// id's two 64-bit hashes, the version, the commit time) sorted by hash, with
// a blocked Bloom filter and a sparse fence index that stay in memory:
// looking up an id that is not in a run costs one cache line of the filter,
// one that is (or a false positive, about 0.5 %) one pread of 4 KiB. Runs
// are written whole (temp file, fdatasync, rename, directory fsync) and never
// changed; the engine merges small runs into bigger ones and deletes runs
// that fell below the window's floor.
//
// A run's file holds only versions that were durable in the log when it was
// written, so a run never names a version a crash could take back. The log
// stays the source of truth: a lost or damaged run is rebuilt from the log.
//
// File layout (integers little-endian):
//
//	[0, 96)          header: magic "WSRN", format u16 = 1, zero u16,
//	                 xxhash64 of header[16:96] + filter + fences,
//	                 first, last, count, min time, max time,
//	                 filter words, fence count, xxhash64 of the entries,
//	                 16 zero bytes
//	[96, 96+32n)     n entries sorted by (hash a, hash b): a, b, version, time
//	then             the filter (filter words × 8 bytes), then the fences
//	                 (hash a of every 128th entry: one per 4 KiB block)
//
// At open only the header, filter and fences are read and checked (a
// fraction of the file); the entries' checksum is checked when a run is
// merged.
package statusruns

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/internal/dirlock"
	"github.com/weaseldb/weaseldb/internal/durable"
)

// Entry is one committed request id.
type Entry struct {
	A, B    uint64 // the id's two independent 64-bit hashes
	Version uint64
	Time    int64 // commit time, unix nanos
}

const (
	headerBytes    = 96
	entryBytes     = 32
	blockEntries   = 128 // one fence per 4 KiB of entries
	filterBitsPerK = 12  // ~0.5 % false positives with 7 probes in a 512-bit block
	formatVersion  = 1
	runSuffix      = ".run"
	tmpSuffix      = ".tmp"
	lockName       = "LOCK"
)

var magic = [4]byte{'W', 'S', 'R', 'N'}

// ErrCorruption marks a run whose stored bytes fail their checksum.
var ErrCorruption = errors.New("statusruns: corruption")

// Dir is an open run directory. Write, Merge and Remove may run on one
// goroutine while Run.Lookup runs on another.
type Dir struct {
	path     string
	lock     *dirlock.Lock
	stopping atomic.Bool // StopMerges was called
}

// ErrStopped is returned by a Merge that StopMerges interrupted.
var ErrStopped = errors.New("statusruns: merge stopped")

// StopMerges makes a Merge under way, and every later one, stop early with
// ErrStopped (leaving its inputs as they were): for a shutdown that must
// not wait for a merge of gigabytes.
func (d *Dir) StopMerges() { d.stopping.Store(true) }

// Open creates (if needed) and locks the directory, and removes temp files
// of writes a crash interrupted. A second Open of the same directory, from
// any process, fails while the first is open.
func Open(path string) (*Dir, error) {
	// Durably: runs written into a directory a power cut takes are gone.
	if err := durable.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("status index %s: %w", path, err)
	}
	lock, err := dirlock.Acquire(filepath.Join(path, lockName))
	if err != nil {
		return nil, fmt.Errorf("status index %s: %w", path, err)
	}
	d := &Dir{path: path, lock: lock}
	names, err := d.names(tmpSuffix)
	if err != nil {
		d.Close()
		return nil, err
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(path, n)); err != nil {
			d.Close()
			return nil, fmt.Errorf("status index %s: remove leftover %s: %w", path, n, err)
		}
	}
	return d, nil
}

// Path returns the directory.
func (d *Dir) Path() string { return d.path }

// Close releases the lock. Runs stay usable until closed themselves.
func (d *Dir) Close() error { return d.lock.Close() }

func (d *Dir) names(suffix string) ([]string, error) {
	des, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("status index %s: list: %w", d.path, err)
	}
	var out []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), suffix) {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// Load opens every run, oldest first. A run that fails its checks is
// deleted and reported in damaged (the caller rebuilds its versions from
// the log); a run whose versions lie inside another's (left by a merge a
// crash interrupted before deleting its inputs) is deleted silently. The
// runs returned may have gaps between them; the caller decides.
func (d *Dir) Load() (runs []*Run, damaged []string, err error) {
	names, err := d.names(runSuffix)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		r, err := openRun(filepath.Join(d.path, n))
		if err != nil {
			if rmErr := os.Remove(filepath.Join(d.path, n)); rmErr != nil {
				closeAll(runs)
				return nil, nil, fmt.Errorf("status index: remove damaged run %s: %w", n, rmErr)
			}
			damaged = append(damaged, fmt.Sprintf("%s: %v", n, err))
			continue
		}
		runs = append(runs, r)
	}
	// Oldest first; of runs starting at one version, the widest first.
	sort.Slice(runs, func(i, j int) bool {
		if runs[i].First != runs[j].First {
			return runs[i].First < runs[j].First
		}
		return runs[i].Last > runs[j].Last
	})
	kept := runs[:0]
	for _, r := range runs {
		if n := len(kept); n > 0 && r.Last <= kept[n-1].Last {
			if err := d.Remove(r); err != nil {
				closeAll(kept)
				return nil, nil, err
			}
			continue
		}
		kept = append(kept, r)
	}
	return kept, damaged, nil
}

func closeAll(runs []*Run) {
	for _, r := range runs {
		r.Close()
	}
}

// Remove closes and deletes runs. No directory fsync: a deleted run that
// comes back after a crash is found below the floor or inside a merged run
// and deleted again.
func (d *Dir) Remove(runs ...*Run) error {
	for _, r := range runs {
		r.Close()
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("status index: remove run %s: %w", filepath.Base(r.path), err)
		}
	}
	return nil
}

func runName(first, last uint64) string {
	return fmt.Sprintf("%020d-%020d%s", first, last, runSuffix)
}

// Write stores entries (any order; versions within [first, last]) as the
// run of versions [first, last] and opens it. entries is sorted in place.
func (d *Dir) Write(first, last uint64, entries []Entry) (*Run, error) {
	slices.SortFunc(entries, compareEntries)
	i := 0
	return d.write(first, last, len(entries), func() (Entry, bool) {
		if i == len(entries) {
			return Entry{}, false
		}
		i++
		return entries[i-1], true
	})
}

func compareEntries(x, y Entry) int {
	if x.A != y.A {
		if x.A < y.A {
			return -1
		}
		return 1
	}
	switch {
	case x.B < y.B:
		return -1
	case x.B > y.B:
		return 1
	}
	return 0
}

// Merge writes one run holding the entries of runs, which must be
// contiguous (each one's First the previous one's Last+1), and opens it.
// The inputs stay open and on disk: the caller removes them once it no
// longer reads them.
func (d *Dir) Merge(runs []*Run) (*Run, error) {
	if len(runs) == 0 {
		return nil, errors.New("status index: merge of no runs")
	}
	total := 0
	h := make(mergeHeap, 0, len(runs))
	for i, r := range runs {
		if i > 0 && r.First != runs[i-1].Last+1 {
			return nil, fmt.Errorf("status index: merge of runs %d..%d and %d..%d: not contiguous", runs[i-1].First, runs[i-1].Last, r.First, r.Last)
		}
		total += r.Count
		it := &runReader{r: r, br: bufio.NewReaderSize(io.NewSectionReader(r.f, headerBytes, int64(r.Count)*entryBytes), 256<<10), left: r.Count, sum: xxhash.New()}
		if ok, err := it.next(); err != nil {
			return nil, err
		} else if ok {
			h = append(h, it)
		}
	}
	heap.Init(&h)
	var mergeErr error
	n := 0
	out, err := d.write(runs[0].First, runs[len(runs)-1].Last, total, func() (Entry, bool) {
		if len(h) == 0 || mergeErr != nil {
			return Entry{}, false
		}
		if n++; n%65536 == 0 && d.stopping.Load() {
			mergeErr = ErrStopped
			return Entry{}, false
		}
		it := h[0]
		e := it.cur
		ok, err := it.next()
		switch {
		case err != nil:
			mergeErr = err
		case ok:
			heap.Fix(&h, 0)
		default:
			heap.Pop(&h)
		}
		return e, true
	})
	if mergeErr != nil {
		if out != nil {
			_ = d.Remove(out)
		}
		return nil, mergeErr
	}
	return out, err
}

// runReader streams one run's entries in order, checking their checksum at
// the end.
type runReader struct {
	r    *Run
	br   *bufio.Reader
	left int
	cur  Entry
	sum  *xxhash.Digest
	buf  [entryBytes]byte
}

func (it *runReader) next() (bool, error) {
	if it.left == 0 {
		if it.sum.Sum64() != it.r.entriesSum {
			return false, fmt.Errorf("status index: run %s: %w: entries checksum", filepath.Base(it.r.path), ErrCorruption)
		}
		return false, nil
	}
	if _, err := io.ReadFull(it.br, it.buf[:]); err != nil {
		return false, fmt.Errorf("status index: read run %s: %w", filepath.Base(it.r.path), err)
	}
	_, _ = it.sum.Write(it.buf[:])
	it.cur = decodeEntry(it.buf[:])
	it.left--
	return true, nil
}

type mergeHeap []*runReader

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return compareEntries(h[i].cur, h[j].cur) < 0 }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func encodeEntry(b []byte, e Entry) {
	binary.LittleEndian.PutUint64(b[0:], e.A)
	binary.LittleEndian.PutUint64(b[8:], e.B)
	binary.LittleEndian.PutUint64(b[16:], e.Version)
	binary.LittleEndian.PutUint64(b[24:], uint64(e.Time))
}

func decodeEntry(b []byte) Entry {
	return Entry{
		A:       binary.LittleEndian.Uint64(b[0:]),
		B:       binary.LittleEndian.Uint64(b[8:]),
		Version: binary.LittleEndian.Uint64(b[16:]),
		Time:    int64(binary.LittleEndian.Uint64(b[24:])),
	}
}

// write streams count sorted entries from next into a new run file.
func (d *Dir) write(first, last uint64, count int, next func() (Entry, bool)) (*Run, error) {
	name := runName(first, last)
	path := filepath.Join(d.path, name)
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("status index: create %s: %w", name, err)
	}
	fail := func(err error) (*Run, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("status index: write %s: %w", name, err)
	}
	r := &Run{First: first, Last: last, filter: newFilter(count)}
	r.fences = make([]uint64, 0, (count+blockEntries-1)/blockEntries)
	if _, err := f.Seek(headerBytes, io.SeekStart); err != nil {
		return fail(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	sum := xxhash.New()
	var buf [entryBytes]byte
	var prev Entry
	n := 0
	for e, ok := next(); ok; e, ok = next() {
		if n > 0 && compareEntries(prev, e) > 0 {
			return fail(errors.New("entries not sorted"))
		}
		if n == count {
			return fail(fmt.Errorf("more than %d entries", count))
		}
		if e.Version < first || e.Version > last {
			return fail(fmt.Errorf("entry at version %d outside %d..%d", e.Version, first, last))
		}
		if n%blockEntries == 0 {
			r.fences = append(r.fences, e.A)
		}
		if n == 0 || e.Time < r.MinTime {
			r.MinTime = e.Time
		}
		if n == 0 || e.Time > r.MaxTime {
			r.MaxTime = e.Time
		}
		r.filter.add(e.A, e.B)
		encodeEntry(buf[:], e)
		_, _ = sum.Write(buf[:])
		if _, err := w.Write(buf[:]); err != nil {
			return fail(err)
		}
		prev = e
		n++
	}
	if n != count {
		return fail(fmt.Errorf("%d entries, want %d", n, count))
	}
	r.Count = n
	r.entriesSum = sum.Sum64()
	meta := r.appendMeta(nil)
	if _, err := w.Write(meta[headerBytes:]); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(meta[:headerBytes], 0); err != nil {
		return fail(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(d.path); err != nil {
		f.Close()
		return nil, fmt.Errorf("status index: write %s: %w", name, err)
	}
	r.f, r.path = f, path
	return r, nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Run is one immutable run file, open for lookups.
type Run struct {
	First, Last      uint64 // the versions it covers
	Count            int
	MinTime, MaxTime int64 // of its entries (0 when empty)

	path       string
	f          *os.File
	filter     filter
	fences     []uint64
	entriesSum uint64
}

// appendMeta returns the header followed by the filter and the fences, as
// stored (the header's checksum covers everything after itself).
func (r *Run) appendMeta(dst []byte) []byte {
	b := append(dst, make([]byte, headerBytes)...)
	h := b[len(dst):]
	copy(h[0:4], magic[:])
	binary.LittleEndian.PutUint16(h[4:], formatVersion)
	binary.LittleEndian.PutUint64(h[16:], r.First)
	binary.LittleEndian.PutUint64(h[24:], r.Last)
	binary.LittleEndian.PutUint64(h[32:], uint64(r.Count))
	binary.LittleEndian.PutUint64(h[40:], uint64(r.MinTime))
	binary.LittleEndian.PutUint64(h[48:], uint64(r.MaxTime))
	binary.LittleEndian.PutUint64(h[56:], uint64(len(r.filter)))
	binary.LittleEndian.PutUint64(h[64:], uint64(len(r.fences)))
	binary.LittleEndian.PutUint64(h[72:], r.entriesSum)
	for _, w := range r.filter {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	for _, f := range r.fences {
		b = binary.LittleEndian.AppendUint64(b, f)
	}
	h = b[len(dst):]
	binary.LittleEndian.PutUint64(h[8:], metaSum(h[16:headerBytes], h[headerBytes:]))
	return b
}

func metaSum(header, rest []byte) uint64 {
	d := xxhash.New()
	_, _ = d.Write(header)
	_, _ = d.Write(rest)
	return d.Sum64()
}

func openRun(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := readMeta(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if want := runName(r.First, r.Last); filepath.Base(path) != want {
		f.Close()
		return nil, fmt.Errorf("%w: holds versions %d..%d", ErrCorruption, r.First, r.Last)
	}
	r.f, r.path = f, path
	return r, nil
}

func readMeta(f *os.File) (*Run, error) {
	var h [headerBytes]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorruption, err)
	}
	if [4]byte(h[0:4]) != magic || binary.LittleEndian.Uint16(h[4:]) != formatVersion {
		return nil, fmt.Errorf("%w: bad magic or format", ErrCorruption)
	}
	r := &Run{
		First:      binary.LittleEndian.Uint64(h[16:]),
		Last:       binary.LittleEndian.Uint64(h[24:]),
		MinTime:    int64(binary.LittleEndian.Uint64(h[40:])),
		MaxTime:    int64(binary.LittleEndian.Uint64(h[48:])),
		entriesSum: binary.LittleEndian.Uint64(h[72:]),
	}
	count := binary.LittleEndian.Uint64(h[32:])
	words := binary.LittleEndian.Uint64(h[56:])
	fences := binary.LittleEndian.Uint64(h[64:])
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	metaOff := uint64(headerBytes) + count*entryBytes
	if count > 1<<40 || words > 1<<40 || fences != (count+blockEntries-1)/blockEntries ||
		uint64(st.Size()) != metaOff+8*(words+fences) || words%8 != 0 || (count > 0 && words == 0) {
		return nil, fmt.Errorf("%w: sizes disagree (count %d, filter %d words, %d fences, %d bytes)", ErrCorruption, count, words, fences, st.Size())
	}
	rest := make([]byte, 8*(words+fences))
	if _, err := f.ReadAt(rest, int64(metaOff)); err != nil {
		return nil, fmt.Errorf("%w: filter: %v", ErrCorruption, err)
	}
	if metaSum(h[16:], rest) != binary.LittleEndian.Uint64(h[8:]) {
		return nil, fmt.Errorf("%w: header checksum", ErrCorruption)
	}
	r.Count = int(count)
	r.filter = make(filter, words)
	for i := range r.filter {
		r.filter[i] = binary.LittleEndian.Uint64(rest[8*i:])
	}
	r.fences = make([]uint64, fences)
	for i := range r.fences {
		r.fences[i] = binary.LittleEndian.Uint64(rest[8*(int(words)+i):])
	}
	return r, nil
}

// Close closes the run's file.
func (r *Run) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// MemoryBytes is what the run keeps in memory (filter and fences).
func (r *Run) MemoryBytes() int { return 8 * (len(r.filter) + len(r.fences)) }

// Lookup finds the entry with hashes a, b. It reads the file only when the
// filter says the id may be there.
func (r *Run) Lookup(a, b uint64) (Entry, bool, error) {
	if r.Count == 0 || !r.filter.has(a, b) {
		return Entry{}, false, nil
	}
	// Entries equal in a may straddle a block boundary: start one block
	// before the first fence >= a.
	blk := max(sort.Search(len(r.fences), func(i int) bool { return r.fences[i] >= a })-1, 0)
	var buf [blockEntries * entryBytes]byte
	for ; blk < len(r.fences); blk++ {
		if blk > 0 && r.fences[blk] > a {
			break
		}
		n := min(blockEntries, r.Count-blk*blockEntries)
		p := buf[:n*entryBytes]
		if _, err := r.f.ReadAt(p, headerBytes+int64(blk)*blockEntries*entryBytes); err != nil {
			return Entry{}, false, fmt.Errorf("status index: read run %s: %w", filepath.Base(r.path), err)
		}
		for i := 0; i < n; i++ {
			e := decodeEntry(p[i*entryBytes:])
			if e.A > a || (e.A == a && e.B > b) {
				return Entry{}, false, nil
			}
			if e.A == a && e.B == b {
				return e, true, nil
			}
		}
	}
	return Entry{}, false, nil
}

// filter is a blocked Bloom filter: each id sets 7 bits in one 512-bit
// block (one cache line), chosen by its second hash; the bits come from
// its first.
type filter []uint64

func newFilter(count int) filter {
	blocks := max((count*filterBitsPerK+511)/512, 1)
	return make(filter, 8*blocks)
}

func (f filter) block(b uint64) []uint64 {
	hi, _ := bits.Mul64(b, uint64(len(f)/8))
	return f[8*hi : 8*hi+8]
}

func (f filter) add(a, b uint64) {
	blk := f.block(b)
	for i := range 7 {
		bit := (a >> (9 * i)) & 511
		blk[bit>>6] |= 1 << (bit & 63)
	}
}

func (f filter) has(a, b uint64) bool {
	blk := f.block(b)
	for i := range 7 {
		bit := (a >> (9 * i)) & 511
		if blk[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

// Term is where one leader term starts: the first version it wrote.
type Term struct {
	First    uint64
	LeaderID []byte
}

const termsName = "terms"

// StoreTerms durably replaces the stored term starts (temp file,
// fdatasync, rename, directory fsync). One line per term: the first
// version and the leader id in hex.
func (d *Dir) StoreTerms(terms []Term) error {
	var b []byte
	for _, t := range terms {
		b = fmt.Appendf(b, "%d %s\n", t.First, hex.EncodeToString(t.LeaderID))
	}
	path := filepath.Join(d.path, termsName)
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("status index: store terms: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = unix.Fdatasync(int(f.Fd()))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(d.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("status index: store terms: %w", err)
	}
	return nil
}

// LoadTerms returns the stored term starts (none if never stored).
func (d *Dir) LoadTerms() ([]Term, error) {
	b, err := os.ReadFile(filepath.Join(d.path, termsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status index: load terms: %w", err)
	}
	var out []Term
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var t Term
		first, id, ok := strings.Cut(line, " ")
		if ok {
			t.First, err = strconv.ParseUint(first, 10, 64)
		}
		if ok && err == nil {
			t.LeaderID, err = hex.DecodeString(id)
		}
		if !ok || err != nil {
			return nil, fmt.Errorf("status index: load terms: line %d: %w: %q", i+1, ErrCorruption, line)
		}
		out = append(out, t)
	}
	return out, nil
}
