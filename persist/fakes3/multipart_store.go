package fakes3

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weaseldb/weaseldb/internal/durable"
)

// upload is one multipart upload in progress. Its fields other than parts
// are immutable; parts is guarded by the store lock.
type upload struct {
	id           string
	bucket       string
	key          string
	initiated    time.Time
	contentType  string
	checksumAlgo string // asked for at creation ("" = none)
	dir          string // "" in memory mode
	parts        map[int]*object
}

// uploadMeta is the durable description of an upload (file "meta" in its
// directory). JSON: written once per upload, read once per restart.
type uploadMeta struct {
	Bucket       string    `json:"bucket"`
	Key          string    `json:"key"`
	Initiated    time.Time `json:"initiated"`
	ContentType  string    `json:"content_type"`
	ChecksumAlgo string    `json:"checksum_algo"`
}

var (
	errNoSuchUpload     = errors.New("no such upload")
	errTooManyUploads   = errors.New("too many multipart uploads in progress")
	errUploadBytesLimit = errors.New("multipart uploads in progress hold too many bytes")
)

// Upload directory layout, next to the bucket directories:
//
//	DIR/uploads/<upload id>/meta          uploadMeta, JSON
//	DIR/uploads/<upload id>/p-<5 digits>  one part, object file format
//	DIR/uploads/<upload id>/.tmp-*        a part write in progress
//
// Upload ids are generated here (hex), never taken from a client: a
// client's id is only ever looked up in the map.
const uploadsDirName = "uploads"

func partFileName(n int) string { return fmt.Sprintf("p-%05d", n) }

func newUploadID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// loadUploads reads DIR/uploads; an upload whose meta file never made it
// (a crash inside CreateMultipartUpload) is removed.
func (s *store) loadUploads() error {
	root := filepath.Join(s.dir, uploadsDirName)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fakes3 load uploads: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, "meta"))
		if errors.Is(err, os.ErrNotExist) {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("fakes3 load uploads: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("fakes3 load upload %s: %w", e.Name(), err)
		}
		var m uploadMeta
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("fakes3 load upload %s: meta: %w", e.Name(), err)
		}
		u := &upload{id: e.Name(), bucket: m.Bucket, key: m.Key, initiated: m.Initiated,
			contentType: m.ContentType, checksumAlgo: m.ChecksumAlgo, dir: dir, parts: map[int]*object{}}
		files, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("fakes3 load upload %s: %w", e.Name(), err)
		}
		for _, f := range files {
			path := filepath.Join(dir, f.Name())
			if strings.HasPrefix(f.Name(), ".tmp-") {
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("fakes3 load upload %s: %w", e.Name(), err)
				}
				continue
			}
			num, ok := strings.CutPrefix(f.Name(), "p-")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(num)
			if err != nil || n < 1 || n > partsMax {
				continue
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("fakes3 load upload %s: %w", e.Name(), err)
			}
			p, err := decodeObjectFile(raw)
			if err != nil {
				return fmt.Errorf("fakes3 load upload %s part %d: %w", e.Name(), n, err)
			}
			u.parts[n] = p
			s.mu.uploadBytes += int64(len(p.data))
		}
		s.mu.uploads[u.id] = u
	}
	return nil
}

// createUpload starts an upload of key in bucketName.
func (s *store) createUpload(bucketName, key, contentType, checksumAlgo string) (*upload, error) {
	id, err := newUploadID()
	if err != nil {
		return nil, fmt.Errorf("fakes3 create upload: %w", err)
	}
	u := &upload{id: id, bucket: bucketName, key: key, initiated: time.Now().UTC(),
		contentType: contentType, checksumAlgo: checksumAlgo, parts: map[int]*object{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.buckets[bucketName] == nil {
		return nil, errNoSuchBucket
	}
	if len(s.mu.uploads) >= s.uploadsMax {
		return nil, errTooManyUploads
	}
	if s.dir != "" {
		// Under the lock: creation is rare, and a racing abort of the
		// same id cannot exist before it is returned.
		root := filepath.Join(s.dir, uploadsDirName)
		if err := durable.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("fakes3 create upload: %w", err)
		}
		u.dir = filepath.Join(root, id)
		meta, err := json.Marshal(uploadMeta{Bucket: bucketName, Key: key, Initiated: u.initiated,
			ContentType: contentType, ChecksumAlgo: checksumAlgo})
		if err != nil {
			return nil, fmt.Errorf("fakes3 create upload: %w", err)
		}
		if err := os.Mkdir(u.dir, 0o755); err != nil {
			return nil, fmt.Errorf("fakes3 create upload: %w", err)
		}
		tmp, err := writeTempFile(u.dir, meta)
		if err == nil {
			err = os.Rename(tmp, filepath.Join(u.dir, "meta"))
		}
		if err == nil {
			err = syncDir(u.dir)
		}
		if err == nil {
			err = syncDir(root)
		}
		if err != nil {
			os.RemoveAll(u.dir)
			return nil, fmt.Errorf("fakes3 create upload: %w", err)
		}
	}
	s.mu.uploads[id] = u
	return u, nil
}

// uploadLocked returns the upload id of bucketName/key.
func (s *store) uploadLocked(bucketName, key, id string) (*upload, error) {
	u := s.mu.uploads[id]
	if u == nil || u.bucket != bucketName || u.key != key {
		return nil, errNoSuchUpload
	}
	return u, nil
}

// putPart stores part n of an upload (replacing an earlier part n), file
// written and fsynced before the lock is taken, as for objects.
func (s *store) putPart(bucketName, key, id string, n int, p *object) error {
	s.mu.Lock()
	u, err := s.uploadLocked(bucketName, key, id)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var tmp string
	if u.dir != "" {
		tmp, err = writeTempFile(u.dir, encodeObjectFile(p))
		if err != nil {
			return fmt.Errorf("fakes3 upload part %d: %w", n, err)
		}
		defer os.Remove(tmp) // no-op after the rename
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.uploads[id] != u {
		return errNoSuchUpload // aborted or completed meanwhile
	}
	var oldBytes int64
	if old := u.parts[n]; old != nil {
		oldBytes = int64(len(old.data))
	}
	if s.mu.uploadBytes-oldBytes+int64(len(p.data)) > s.uploadBytesMax {
		return errUploadBytesLimit
	}
	if tmp != "" {
		if err := os.Rename(tmp, filepath.Join(u.dir, partFileName(n))); err != nil {
			return fmt.Errorf("fakes3 upload part %d: %w", n, err)
		}
		if err := syncDir(u.dir); err != nil {
			return fmt.Errorf("fakes3 upload part %d: %w", n, err)
		}
	}
	u.parts[n] = p
	s.mu.uploadBytes += int64(len(p.data)) - oldBytes
	return nil
}

// uploadParts returns the parts of an upload in part number order.
func (s *store) uploadParts(bucketName, key, id string) (*upload, []partEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.uploadLocked(bucketName, key, id)
	if err != nil {
		return nil, nil, err
	}
	out := make([]partEntry, 0, len(u.parts))
	for n, p := range u.parts {
		out = append(out, partEntry{n, p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].number < out[j].number })
	return u, out, nil
}

type partEntry struct {
	number int
	*object
}

// listUploads returns the uploads of a bucket by key, then initiation.
func (s *store) listUploads(bucketName string) ([]*upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.buckets[bucketName] == nil {
		return nil, errNoSuchBucket
	}
	var out []*upload
	for _, u := range s.mu.uploads {
		if u.bucket == bucketName {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key != out[j].key {
			return out[i].key < out[j].key
		}
		return out[i].id < out[j].id
	})
	return out, nil
}

// abortUpload drops an upload and its parts.
func (s *store) abortUpload(bucketName, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.uploadLocked(bucketName, key, id)
	if err != nil {
		return err
	}
	return s.dropUploadLocked(u)
}

func (s *store) dropUploadLocked(u *upload) error {
	delete(s.mu.uploads, u.id)
	for _, p := range u.parts {
		s.mu.uploadBytes -= int64(len(p.data))
	}
	if u.dir != "" {
		if err := os.RemoveAll(u.dir); err != nil {
			return fmt.Errorf("fakes3 drop upload %s: %w", u.id, err)
		}
		if err := syncDir(filepath.Dir(u.dir)); err != nil {
			return fmt.Errorf("fakes3 drop upload %s: %w", u.id, err)
		}
	}
	return nil
}
