package fakes3

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/weaseldb/weaseldb/internal/durable"
	"github.com/weaseldb/weaseldb/persist"
)

// object is one stored object. Immutable once stored: a PUT replaces the
// pointer, never the contents, so readers may use it without the lock.
type object struct {
	key          string
	data         []byte
	etag         string // quoted MD5 hex, as S3 sends it
	modified     time.Time
	contentType  string
	checksumAlgo string  // one of checksumAlgos; never empty
	checksum     string  // base64 of the checksum named by checksumAlgo
	partSizes    []int64 // a multipart object's part sizes, in order; nil otherwise
}

type bucket struct {
	name    string
	created time.Time
	dir     string // "" in memory mode
	objects *btree.BTreeG[*object]
}

func objectLess(a, b *object) bool { return a.key < b.key }

func newBucket(name, dir string, created time.Time) *bucket {
	return &bucket{name: name, created: created, dir: dir, objects: btree.NewG(16, objectLess)}
}

// store keeps every bucket and object in memory and, in directory mode,
// mirrors them to files so that a restarted server finds them again.
//
// Directory layout (no path is ever built from a client-supplied name
// without encoding it):
//
//	DIR/b-<hex(bucket name)>/<sha256 hex(key)>.obj   one object
//	DIR/b-<hex(bucket name)>/.tmp-*                   a PUT in progress
//
// Hashing the key keeps file names fixed-length (S3 keys may be 1024 bytes,
// longer than a file name may be); the key itself is stored inside the
// file, see encodeObjectFile.
type store struct {
	dir            string // "" = memory only; immutable
	uploadsMax     int    // multipart uploads in progress; immutable
	uploadBytesMax int64  // bytes of their parts; immutable

	mu struct {
		sync.Mutex
		buckets     map[string]*bucket // guarded by mu
		uploads     map[string]*upload // by upload id; guarded by mu
		uploadBytes int64              // sum of the parts' sizes; guarded by mu
	}
}

var (
	errNoSuchBucket   = errors.New("no such bucket")
	errBucketExists   = errors.New("bucket exists")
	errBucketNotEmpty = errors.New("bucket not empty")
	errObjectExists   = errors.New("object exists")
	errETagMismatch   = errors.New("etag mismatch")
)

func openStore(dir string, uploadsMax int, uploadBytesMax int64) (*store, error) {
	s := &store{dir: dir, uploadsMax: uploadsMax, uploadBytesMax: uploadBytesMax}
	s.mu.buckets = make(map[string]*bucket)
	s.mu.uploads = make(map[string]*upload)
	if dir == "" {
		return s, nil
	}
	// Durably: a store directory lost to a power cut takes every object.
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fakes3 store %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fakes3 store %s: %w", dir, err)
	}
	for _, e := range entries {
		name, ok := bucketNameFromDir(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		b, err := loadBucket(name, filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		s.mu.buckets[name] = b
	}
	if err := s.loadUploads(); err != nil {
		return nil, err
	}
	return s, nil
}

func bucketDirName(name string) string { return "b-" + hex.EncodeToString([]byte(name)) }

func bucketNameFromDir(dirName string) (string, bool) {
	h, ok := strings.CutPrefix(dirName, "b-")
	if !ok {
		return "", false
	}
	raw, err := hex.DecodeString(h)
	if err != nil || validBucketName(string(raw)) != nil {
		return "", false
	}
	return string(raw), true
}

func objectFileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]) + ".obj"
}

func loadBucket(name, dir string) (*bucket, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("fakes3 load bucket %q: %w", name, err)
	}
	b := newBucket(name, dir, info.ModTime())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fakes3 load bucket %q: %w", name, err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") { // a PUT that never finished
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("fakes3 load bucket %q: %w", name, err)
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".obj") {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("fakes3 load bucket %q: %w", name, err)
		}
		o, err := decodeObjectFile(raw)
		if err != nil {
			return nil, fmt.Errorf("fakes3 load bucket %q file %s: %w", name, e.Name(), err)
		}
		b.objects.ReplaceOrInsert(o)
	}
	return b, nil
}

// Object file format: magic, then uvarint-length-prefixed fields, then the
// data:
//
//	"WS3O2\n" | key | contentType | checksumAlgo | checksum | etag | part sizes | modified (uvarint unix nanos) | data
//
// part sizes is empty or, for a multipart object, the decimal sizes of its
// parts joined by commas (GetObject with partNumber needs them).
//
// Version 1 files (written before multipart) lack the etag field: their
// ETag is the MD5 of the data. A multipart object's ETag is not, so it is
// stored.
const (
	objectFileMagicV1 = "WS3O1\n"
	objectFileMagic   = "WS3O2\n"
)

func encodeObjectFile(o *object) []byte {
	b := make([]byte, 0, len(objectFileMagic)+len(o.key)+len(o.data)+128)
	b = append(b, objectFileMagic...)
	sizes := make([]string, len(o.partSizes))
	for i, n := range o.partSizes {
		sizes[i] = strconv.FormatInt(n, 10)
	}
	for _, f := range []string{o.key, o.contentType, o.checksumAlgo, o.checksum, o.etag, strings.Join(sizes, ",")} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.AppendUvarint(b, uint64(o.modified.UnixNano()))
	return append(b, o.data...)
}

func decodeObjectFile(raw []byte) (*object, error) {
	nfields := 6
	rest, ok := strings.CutPrefix(string(raw), objectFileMagic)
	if !ok {
		nfields = 4
		if rest, ok = strings.CutPrefix(string(raw), objectFileMagicV1); !ok {
			return nil, errors.New("bad magic")
		}
	}
	var fields [6]string
	for i := range nfields {
		n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, errors.New("bad field length")
		}
		fields[i] = rest[w : w+int(n)]
		rest = rest[w+int(n):]
	}
	nanos, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
	if w <= 0 {
		return nil, errors.New("bad modification time")
	}
	data := []byte(rest[w:])
	o := &object{
		key: fields[0], data: data, contentType: fields[1],
		checksumAlgo: fields[2], checksum: fields[3],
		modified: time.Unix(0, int64(nanos)).UTC(), etag: fields[4],
	}
	if o.etag == "" {
		o.etag = etagOf(data)
	}
	if fields[5] != "" {
		var total int64
		for _, f := range strings.Split(fields[5], ",") {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil || n < 0 {
				return nil, errors.New("bad part sizes")
			}
			o.partSizes = append(o.partSizes, n)
			total += n
		}
		if total != int64(len(data)) {
			return nil, errors.New("part sizes do not add up to the data")
		}
	}
	return o, nil
}

func (s *store) bucket(name string) (*bucket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[name]
	if b == nil {
		return nil, errNoSuchBucket
	}
	return b, nil
}

func (s *store) createBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.buckets[name] != nil {
		return errBucketExists
	}
	dir := ""
	if s.dir != "" {
		dir = filepath.Join(s.dir, bucketDirName(name))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("fakes3 create bucket %q: %w", name, err)
		}
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("fakes3 create bucket %q: %w", name, err)
		}
	}
	s.mu.buckets[name] = newBucket(name, dir, time.Now().UTC())
	return nil
}

func (s *store) deleteBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[name]
	if b == nil {
		return errNoSuchBucket
	}
	if b.objects.Len() > 0 {
		return errBucketNotEmpty
	}
	for _, u := range s.mu.uploads { // abandoned with their bucket
		if u.bucket == name {
			if err := s.dropUploadLocked(u); err != nil {
				return fmt.Errorf("fakes3 delete bucket %q: %w", name, err)
			}
		}
	}
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			return fmt.Errorf("fakes3 delete bucket %q: %w", name, err)
		}
	}
	delete(s.mu.buckets, name)
	return nil
}

func (s *store) listBuckets() []*bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*bucket, 0, len(s.mu.buckets))
	for _, b := range s.mu.buckets {
		out = append(out, b)
	}
	return out
}

func (s *store) get(bucketName, key string) (*object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[bucketName]
	if b == nil {
		return nil, errNoSuchBucket
	}
	o, _ := b.objects.Get(&object{key: key})
	return o, nil
}

// putCondition is what a PUT requires of the current object.
type putCondition struct {
	ifNoneMatchAny bool   // If-None-Match: * — the key must not exist
	ifMatch        string // If-Match: the current ETag must be this
}

// put stores o. The condition check and the insert happen under one lock
// hold, so two concurrent If-None-Match PUTs of one key cannot both win.
// In directory mode the file is written and fsynced before the lock is
// taken and renamed into place under it.
func (s *store) put(bucketName string, o *object, cond putCondition) error {
	return s.putCompleting(bucketName, o, cond, "")
}

// putCompleting is put that, when uploadID is not empty, also ends that
// multipart upload of o.key in the same step: the object appears and the
// upload disappears together (a completed upload cannot complete again).
func (s *store) putCompleting(bucketName string, o *object, cond putCondition, uploadID string) error {
	b, err := s.bucket(bucketName)
	if err != nil {
		return err
	}
	var tmp string
	if b.dir != "" {
		tmp, err = writeTempFile(b.dir, encodeObjectFile(o))
		if err != nil {
			return fmt.Errorf("fakes3 put %q: %w", o.key, err)
		}
		defer os.Remove(tmp) // no-op after the rename
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.buckets[bucketName] != b {
		return errNoSuchBucket
	}
	var u *upload
	if uploadID != "" {
		if u, err = s.uploadLocked(bucketName, o.key, uploadID); err != nil {
			return err
		}
	}
	old, exists := b.objects.Get(o)
	if cond.ifNoneMatchAny && exists {
		return errObjectExists
	}
	if cond.ifMatch != "" && (!exists || !etagMatches(cond.ifMatch, old.etag)) {
		return errETagMismatch
	}
	if tmp != "" {
		if err := os.Rename(tmp, filepath.Join(b.dir, objectFileName(o.key))); err != nil {
			return fmt.Errorf("fakes3 put %q: %w", o.key, err)
		}
		if err := syncDir(b.dir); err != nil {
			return fmt.Errorf("fakes3 put %q: %w", o.key, err)
		}
	}
	b.objects.ReplaceOrInsert(o)
	if u != nil {
		return s.dropUploadLocked(u)
	}
	return nil
}

// removeIfMatch deletes key if its ETag matches ifMatch, in one atomic
// step with the check; a missing key succeeds.
func (s *store) removeIfMatch(bucketName, key, ifMatch string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[bucketName]
	if b == nil {
		return errNoSuchBucket
	}
	if old, ok := b.objects.Get(&object{key: key}); ok && !etagMatches(ifMatch, old.etag) {
		return errETagMismatch
	}
	return s.removeLocked(b, key)
}

// remove deletes key; deleting a missing key succeeds, as in S3.
func (s *store) remove(bucketName string, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[bucketName]
	if b == nil {
		return errNoSuchBucket
	}
	return s.removeLocked(b, keys...)
}

func (s *store) removeLocked(b *bucket, keys ...string) error {
	for _, key := range keys {
		if _, ok := b.objects.Delete(&object{key: key}); !ok {
			continue
		}
		if b.dir != "" {
			err := os.Remove(filepath.Join(b.dir, objectFileName(key)))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("fakes3 delete %q: %w", key, err)
			}
			// Each deletion durable before the next, as S3 applies a
			// DeleteObjects: removals made durable by one sync at the end
			// may survive a power cut in any subset, and a client that
			// deletes oldest first (s3log truncation) would find a hole
			// in the middle of its log.
			if err := syncDir(b.dir); err != nil {
				return fmt.Errorf("fakes3 delete %q: %w", key, err)
			}
		}
	}
	return nil
}

// ascend calls fn for each object of the bucket with key > pivot (>= when
// inclusive), in key order, until fn returns false. fn runs under the
// store lock: it must not call back into the store.
func (s *store) ascend(bucketName, pivot string, inclusive bool, fn func(*object) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.buckets[bucketName]
	if b == nil {
		return errNoSuchBucket
	}
	b.objects.AscendGreaterOrEqual(&object{key: pivot}, func(o *object) bool {
		if o.key == pivot && !inclusive {
			return true
		}
		return fn(o)
	})
	return nil
}

func writeTempFile(dir string, data []byte) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	path := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// validBucketName applies the S3 bucket naming rules (shared with config
// validation, so a name refused here fails at start instead).
func validBucketName(name string) error { return persist.ValidBucketName(name) }
