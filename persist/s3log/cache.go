package s3log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// segmentCache is a local copy of recent segments (Config.CacheDir): the
// ones this server wrote, and the ones it read. A restart rebuilds the
// conflict window from the log's tail; with the cache that is a local read
// instead of one GET per segment, so recovery costs grow with what was
// written since the last recovery (the checkpoint's part) rather than with
// the log (issue 12 item 16).
//
// A cached copy is used only when the ETag it was stored with equals the
// ETag S3 lists (or returned on PUT) for that name now, so a name that was
// deleted and written again (a segment recovery discarded, a log rewritten
// under the prefix) is read from S3, never from a stale copy; and
// ReadFrom still checks each segment's own checksum. The cache is never
// fsynced: a torn record at the end of a file is cut at open.
//
// Files "<seq, 20 digits>.cache" hold records
//
//	| u32 record length | u8 etag length | etag | segment bytes |
//
// and roll at cacheFileBytes; the oldest files are deleted past
// Config.CacheBytes.
type segmentCache struct {
	dir      string
	maxBytes int64
	log      *slog.Logger
	lock     *os.File

	mu struct {
		sync.Mutex
		files []*cacheFile // by seq; the last one is appended to
		index map[tx.Version]cacheLoc
		total int64
		err   error // sticky write error: the cache stops taking records
	}
}

type cacheFile struct {
	seq  uint64
	f    *os.File
	size int64
}

type cacheLoc struct {
	file *cacheFile
	off  int64 // of the segment bytes
	n    int
	etag string
}

const (
	cacheFileBytes = 16 << 20
	cacheSuffix    = ".cache"
)

func openSegmentCache(dir string, maxBytes int64, log *slog.Logger) (*segmentCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("s3log: segment cache %s: %w", dir, err)
	}
	// One process per cache: another one (a second server on the same
	// directory) goes without, reading S3.
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("s3log: segment cache %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		log.Warn("s3log: segment cache in use by another process; running without it", "dir", dir, "err", err)
		return nil, nil
	}
	c := &segmentCache{dir: dir, maxBytes: maxBytes, log: log, lock: lock}
	c.mu.index = map[tx.Version]cacheLoc{}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("s3log: segment cache %s: %w", dir, err)
	}
	var seqs []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), cacheSuffix)
		if !ok {
			continue
		}
		if seq, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		cf, err := c.scan(seq)
		if err != nil {
			c.close()
			return nil, err
		}
		c.mu.files = append(c.mu.files, cf)
		c.mu.total += cf.size
	}
	c.evictLocked()
	return c, nil
}

func (c *segmentCache) path(seq uint64) string {
	return filepath.Join(c.dir, fmt.Sprintf("%020d%s", seq, cacheSuffix))
}

// scan indexes one file's records and cuts a torn or damaged end.
func (c *segmentCache) scan(seq uint64) (*cacheFile, error) {
	f, err := os.OpenFile(c.path(seq), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("s3log: segment cache: %w", err)
	}
	cf := &cacheFile{seq: seq, f: f}
	br := bufio.NewReaderSize(f, 256<<10)
	var off int64
	var head [5]byte
	var first [persist.SegmentHeaderBytes]byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			break
		}
		n := int64(binary.LittleEndian.Uint32(head[:]))
		el := int64(head[4])
		if n < 1+el+persist.SegmentHeaderBytes {
			break
		}
		etag := make([]byte, el)
		if _, err := io.ReadFull(br, etag); err != nil {
			break
		}
		if _, err := io.ReadFull(br, first[:]); err != nil {
			break
		}
		h, ok := persist.PeekSegmentRange(first[:])
		if !ok {
			break
		}
		rest := n - 1 - el - persist.SegmentHeaderBytes
		if d, err := br.Discard(int(rest)); err != nil || int64(d) != rest {
			break
		}
		c.mu.index[h] = cacheLoc{file: cf, off: off + 5 + el, n: int(n - 1 - el), etag: string(etag)}
		off += 4 + n
	}
	if err := f.Truncate(off); err != nil {
		f.Close()
		return nil, fmt.Errorf("s3log: segment cache: cut %s: %w", c.path(seq), err)
	}
	cf.size = off
	return cf, nil
}

// put stores a segment known to be stored in S3 under etag.
func (c *segmentCache) put(first tx.Version, etag string, data []byte) {
	if etag == "" || len(etag) > 255 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		return
	}
	if loc, ok := c.mu.index[first]; ok && loc.etag == etag {
		return
	}
	n := len(c.mu.files)
	if n == 0 || c.mu.files[n-1].size >= cacheFileBytes {
		seq := uint64(0)
		if n > 0 {
			seq = c.mu.files[n-1].seq + 1
		}
		f, err := os.OpenFile(c.path(seq), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.files = append(c.mu.files, &cacheFile{seq: seq, f: f})
	}
	cf := c.mu.files[len(c.mu.files)-1]
	rec := make([]byte, 0, 5+len(etag)+len(data))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(1+len(etag)+len(data)))
	rec = append(rec, byte(len(etag)))
	rec = append(rec, etag...)
	rec = append(rec, data...)
	if _, err := cf.f.WriteAt(rec, cf.size); err != nil {
		c.fail(err)
		return
	}
	c.mu.index[first] = cacheLoc{file: cf, off: cf.size + 5 + int64(len(etag)), n: len(data), etag: etag}
	cf.size += int64(len(rec))
	c.mu.total += int64(len(rec))
	c.evictLocked()
}

func (c *segmentCache) fail(err error) {
	c.mu.err = err
	c.log.Warn("s3log: segment cache write failed; the cache stops growing until restart (reads go to S3)", "dir", c.dir, "err", err)
}

// evictLocked deletes the oldest files (never the one appended to) while
// the cache is over its bound.
func (c *segmentCache) evictLocked() {
	for c.mu.total > c.maxBytes && len(c.mu.files) > 1 {
		old := c.mu.files[0]
		c.mu.files = c.mu.files[1:]
		c.mu.total -= old.size
		for v, loc := range c.mu.index {
			if loc.file == old {
				delete(c.mu.index, v)
			}
		}
		old.f.Close()
		if err := os.Remove(c.path(old.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("s3log: segment cache: remove old file", "err", err)
		}
	}
}

// get returns the cached copy of segment first if it was stored under etag.
func (c *segmentCache) get(first tx.Version, etag string) ([]byte, bool) {
	if etag == "" {
		return nil, false
	}
	c.mu.Lock()
	loc, ok := c.mu.index[first]
	c.mu.Unlock()
	if !ok || loc.etag != etag {
		return nil, false
	}
	buf := make([]byte, loc.n)
	if _, err := loc.file.f.ReadAt(buf, loc.off); err != nil {
		return nil, false // evicted meanwhile, or unreadable: read S3
	}
	return buf, true
}

func (c *segmentCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cf := range c.mu.files {
		cf.f.Close()
	}
	c.mu.files = nil
	c.mu.err = errors.New("closed")
	c.lock.Close()
}
