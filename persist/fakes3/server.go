package fakes3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Options configures a Server. The zero value is an empty in-memory server.
type Options struct {
	// Dir is where objects are kept across restarts. Empty keeps everything
	// in memory only. Objects are always also held in memory: this is a
	// test and development server, not a storage system.
	Dir string
	// Buckets are created at start if missing.
	Buckets []string
	// ObjectBytesMax bounds one object (and so one request body). Zero
	// selects 64 MiB.
	ObjectBytesMax int64
	// UploadsMax bounds the multipart uploads in progress (begun, neither
	// completed nor aborted) and UploadBytesMax the bytes of their parts,
	// so abandoned uploads cannot fill memory or disk: past either bound
	// CreateMultipartUpload or UploadPart answers 400 InvalidRequest
	// saying which bound. Zero selects 1000 uploads and 1 GiB.
	UploadsMax     int
	UploadBytesMax int64
	// Logger receives start-up and storage failures, never one line per
	// request. Nil selects slog.Default().
	Logger *slog.Logger
}

const (
	objectBytesMaxDefault = 64 << 20
	uploadsMaxDefault     = 1000
	uploadBytesMaxDefault = 1 << 30
	deleteBodyBytesMax    = 2 << 20 // 1000 keys of 1 KiB each, XML-escaped
)

// Server is the fake S3 service: an http.Handler. Host it on any HTTP/1.1
// server (see ListenTCP).
type Server struct {
	opts   Options       // immutable
	store  *store        // never nil
	faults *Faults       // never nil
	log    *slog.Logger  // never nil
	reqSeq atomic.Uint64 // request ids
	// inFlight counts requests being served (from ServeHTTP's start to
	// its end, whatever their fault): see WaitIdle.
	inFlight atomic.Int64
	crc32c   *crc32.Table // immutable
}

// New opens the store (loading Dir if set) and creates Options.Buckets.
func New(opts Options) (*Server, error) {
	if opts.ObjectBytesMax <= 0 {
		opts.ObjectBytesMax = objectBytesMaxDefault
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UploadsMax <= 0 {
		opts.UploadsMax = uploadsMaxDefault
	}
	if opts.UploadBytesMax <= 0 {
		opts.UploadBytesMax = uploadBytesMaxDefault
	}
	st, err := openStore(opts.Dir, opts.UploadsMax, opts.UploadBytesMax)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, store: st, faults: &Faults{}, log: opts.Logger,
		crc32c: crc32.MakeTable(crc32.Castagnoli)}
	for _, name := range opts.Buckets {
		if err := validBucketName(name); err != nil {
			return nil, fmt.Errorf("fakes3: %w", err)
		}
		if err := st.createBucket(name); err != nil && !errors.Is(err, errBucketExists) {
			return nil, err
		}
	}
	return s, nil
}

// Faults returns the fault injection switchboard of s.
func (s *Server) Faults() *Faults { return s.faults }

// InFlight returns how many requests are being served now.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// WaitIdle waits until no request is being served, or ctx ends. A client
// that was killed may still have requests in the server, and a write among
// them takes effect when it is served, as on S3: a test that restarts on
// the same prefix after killing the writer waits for them to land first.
// (A request whose bytes the server has not yet started reading is not
// counted: the restarted client must still cope with a late write.)
func (s *Server) WaitIdle(ctx context.Context) error {
	for s.inFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fakes3: %d requests still in flight: %w", s.inFlight.Load(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// s3Error is an S3 error answer.
type s3Error struct {
	status int
	code   string
	msg    string
}

var (
	errNoSuchKeyAnswer     = s3Error{http.StatusNotFound, "NoSuchKey", "The specified key does not exist."}
	errNoSuchBucketAnswer  = s3Error{http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist."}
	errPreconditionAnswer  = s3Error{http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"}
	errInvalidRangeAnswer  = s3Error{http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable"}
	errSlowDownAnswer      = s3Error{http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."}
	errInternalAnswer      = s3Error{http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again."}
	errMalformedXMLAnswer  = s3Error{http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."}
	errBadDigestAnswer     = s3Error{http.StatusBadRequest, "BadDigest", "The Content-MD5 or checksum you specified did not match what we received."}
	errInvalidDigestAnswer = s3Error{http.StatusBadRequest, "InvalidDigest", "The Content-MD5 or checksum you specified is not valid."}
	errTooLargeAnswer      = s3Error{http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size."}
	errIncompleteAnswer    = s3Error{http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header."}
	errSHA256Answer        = s3Error{http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."}
	errBucketExistsAnswer  = s3Error{http.StatusConflict, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it."}
	errNotEmptyAnswer      = s3Error{http.StatusConflict, "BucketNotEmpty", "The bucket you tried to delete is not empty."}
	errNotImplAnswer       = s3Error{http.StatusNotImplemented, "NotImplemented", "A header or query you provided implies functionality that is not implemented."}
	errNoSuchUploadAnswer  = s3Error{http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."}
	errInvalidPartAnswer   = s3Error{http.StatusBadRequest, "InvalidPart", "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."}
	errPartOrderAnswer     = s3Error{http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number."}
	errTooSmallAnswer      = s3Error{http.StatusBadRequest, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size."}
)

func invalidArgument(msg string) s3Error {
	return s3Error{http.StatusBadRequest, "InvalidArgument", msg}
}

func invalidRequest(msg string) s3Error {
	return s3Error{http.StatusBadRequest, "InvalidRequest", msg}
}

// request is one parsed request.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	bucket string
	key    string
	query  url.Values
	id     string
}

// ServeHTTP answers one S3 request. Addressing is path-style only:
// "/<bucket>/<key>".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	req := &request{w: w, r: r, query: r.URL.Query(),
		id: strconv.FormatUint(s.reqSeq.Add(1), 16)}
	path := strings.TrimPrefix(r.URL.Path, "/")
	req.bucket, req.key, _ = strings.Cut(path, "/")
	w.Header().Set("x-amz-request-id", req.id)
	w.Header().Set("Server", "WeaselDB-fakes3")

	op, handler := s.route(req)
	v, answerDelay, err := s.faults.admit(r.Context(), op)
	if err != nil {
		return // the client went away while the request waited
	}
	switch v {
	case verdictDrop:
		dropConnection(w)
		return
	case verdictSlowDown:
		s.writeError(req, errSlowDownAnswer)
		return
	case verdictInternalError:
		s.writeError(req, errInternalAnswer)
		return
	case verdictDropAfterApply:
		req.w = &discardWriter{header: make(http.Header)}
		handler(req)
		dropConnection(w)
		return
	case verdictApplyLate:
		s.applyLate(req, w, handler)
		return
	}
	if answerDelay <= 0 {
		handler(req)
		return
	}
	// The effect lands now; the answer waits (and is lost if the client
	// gives up meanwhile).
	held := &heldAnswer{header: w.Header(), status: http.StatusOK}
	req.w = held
	handler(req)
	t := time.NewTimer(answerDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(held.status)
	w.Write(held.body.Bytes())
}

// applyLate reads the whole body, waits for the client to give up, then
// applies the request with its answer discarded: a write that lands after
// its client saw it fail.
func (s *Server) applyLate(req *request, w http.ResponseWriter, handler func(*request)) {
	body, err := io.ReadAll(req.r.Body)
	if err != nil {
		return // the body never arrived whole: no effect
	}
	t := time.NewTimer(lateApplyHoldMax)
	defer t.Stop()
	select {
	case <-req.r.Context().Done():
	case <-t.C:
	}
	if gate := s.faults.lateGate(); gate != nil { // HoldLate: the test says when
		select {
		case <-gate:
		case <-t.C:
		}
	}
	r := req.r.WithContext(context.WithoutCancel(req.r.Context()))
	r.Body = io.NopCloser(bytes.NewReader(body))
	req.r = r
	req.w = &discardWriter{header: make(http.Header)}
	handler(req)
	dropConnection(w)
}

func (s *Server) route(req *request) (Op, func(*request)) {
	m := req.r.Method
	switch {
	case req.bucket == "":
		if m == http.MethodGet {
			return OpBucket, s.listBuckets
		}
	case req.key == "":
		switch {
		case m == http.MethodPut && len(req.query) == 0:
			return OpBucket, s.createBucket
		case m == http.MethodHead:
			return OpBucket, s.headBucket
		case m == http.MethodDelete && len(req.query) == 0:
			return OpBucket, s.deleteBucket
		case m == http.MethodGet && req.query.Get("list-type") == "2":
			return OpListObjects, s.listObjects
		case m == http.MethodGet && req.query.Has("uploads"):
			return OpMultipart, s.listUploads
		case m == http.MethodGet && req.query.Has("location"):
			return OpBucket, s.bucketLocation
		case m == http.MethodPost && req.query.Has("delete"):
			return OpDeleteObjects, s.deleteObjects
		}
	default:
		q := req.query
		switch {
		case m == http.MethodPost && q.Has("uploads"):
			return OpMultipart, s.createUpload
		case m == http.MethodPut && q.Has("uploadId") && q.Has("partNumber"):
			if req.r.Header.Get("x-amz-copy-source") != "" {
				return OpMultipart, s.uploadPartCopy
			}
			return OpMultipart, s.uploadPart
		case m == http.MethodPost && q.Has("uploadId"):
			return OpMultipart, s.completeUpload
		case m == http.MethodDelete && q.Has("uploadId"):
			return OpMultipart, s.abortUpload
		case m == http.MethodGet && q.Has("uploadId"):
			return OpMultipart, s.listParts
		case m == http.MethodPut && !hasSubresource(q) && req.r.Header.Get("x-amz-copy-source") != "":
			return OpPutObject, s.copyObject
		case m == http.MethodGet && onlyPartNumber(q):
			return OpGetObject, s.getObject
		case m == http.MethodHead && onlyPartNumber(q):
			return OpHeadObject, s.getObject
		}
		if hasSubresource(req.query) || req.r.Header.Get("x-amz-copy-source") != "" {
			break // ACLs, tagging, versions: not implemented
		}
		switch m {
		case http.MethodGet:
			return OpGetObject, s.getObject
		case http.MethodHead:
			return OpHeadObject, s.getObject
		case http.MethodPut:
			return OpPutObject, s.putObject
		case http.MethodDelete:
			return OpDeleteObject, s.deleteObject
		}
	}
	return OpBucket, func(req *request) { s.writeError(req, errNotImplAnswer) }
}

// hasSubresource reports a query parameter that selects something other
// than the object itself (x-id is the SDK's operation hint and harmless).
func hasSubresource(q url.Values) bool {
	for k := range q {
		if k != "x-id" && !strings.HasPrefix(k, "X-Amz-") && !strings.HasPrefix(k, "response-") {
			return true
		}
	}
	return false
}

// onlyPartNumber reports a query that selects one part of an object
// (GetObject/HeadObject partNumber) and nothing else.
func onlyPartNumber(q url.Values) bool {
	if !q.Has("partNumber") {
		return false
	}
	rest := url.Values{}
	for k, v := range q {
		if k != "partNumber" {
			rest[k] = v
		}
	}
	return !hasSubresource(rest)
}

func (s *Server) writeError(req *request, e s3Error) {
	h := req.w.Header()
	if req.r.Method == http.MethodHead {
		req.w.WriteHeader(e.status) // HEAD answers carry no body
		return
	}
	doc := errorDocument{Code: e.code, Message: e.msg, BucketName: req.bucket, Key: req.key,
		Resource: req.r.URL.Path, RequestID: req.id}
	body, err := xml.Marshal(doc)
	if err != nil { // cannot happen for these field types
		req.w.WriteHeader(e.status)
		return
	}
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	req.w.WriteHeader(e.status)
	io.WriteString(req.w, xml.Header)
	req.w.Write(body)
}

func (s *Server) writeXML(req *request, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		s.log.Error("fakes3: encode answer", "err", err)
		s.writeError(req, errInternalAnswer)
		return
	}
	h := req.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	req.w.WriteHeader(status)
	io.WriteString(req.w, xml.Header)
	req.w.Write(body)
}

// storeFailure maps a store error to an answer, logging the unexpected ones.
func (s *Server) storeFailure(req *request, err error) {
	switch {
	case errors.Is(err, errNoSuchBucket):
		s.writeError(req, errNoSuchBucketAnswer)
	case errors.Is(err, errObjectExists), errors.Is(err, errETagMismatch):
		s.writeError(req, errPreconditionAnswer)
	case errors.Is(err, errBucketExists):
		s.writeError(req, errBucketExistsAnswer)
	case errors.Is(err, errBucketNotEmpty):
		s.writeError(req, errNotEmptyAnswer)
	case errors.Is(err, errNoSuchUpload):
		s.writeError(req, errNoSuchUploadAnswer)
	case errors.Is(err, errTooManyUploads):
		s.writeError(req, invalidRequest(fmt.Sprintf("%d multipart uploads are in progress, the most this server allows (fakes3 --max-uploads): complete or abort some (ListMultipartUploads, AbortMultipartUpload)", s.opts.UploadsMax)))
	case errors.Is(err, errUploadBytesLimit):
		s.writeError(req, invalidRequest(fmt.Sprintf("the parts of the multipart uploads in progress would exceed %d bytes, the most this server allows (fakes3 --max-upload-bytes): complete or abort some (ListMultipartUploads, AbortMultipartUpload)", s.opts.UploadBytesMax)))
	default:
		s.log.Error("fakes3: storage failure", "bucket", req.bucket, "key", req.key, "err", err)
		s.writeError(req, errInternalAnswer)
	}
}

// --- buckets ---

func (s *Server) listBuckets(req *request) {
	res := listAllMyBucketsResult{Owner: owner{ID: "fakes3", DisplayName: "fakes3"}}
	for _, b := range s.store.listBuckets() {
		res.Buckets = append(res.Buckets, bucketEntry{Name: b.name, CreationDate: b.created.Format(s3TimeFormat)})
	}
	sort.Slice(res.Buckets, func(i, j int) bool { return res.Buckets[i].Name < res.Buckets[j].Name })
	s.writeXML(req, http.StatusOK, res)
}

func (s *Server) createBucket(req *request) {
	if err := validBucketName(req.bucket); err != nil {
		s.writeError(req, s3Error{http.StatusBadRequest, "InvalidBucketName", err.Error()})
		return
	}
	io.Copy(io.Discard, io.LimitReader(req.r.Body, 64<<10)) // CreateBucketConfiguration: ignored
	if err := s.store.createBucket(req.bucket); err != nil {
		s.storeFailure(req, err)
		return
	}
	req.w.Header().Set("Location", "/"+req.bucket)
	req.w.WriteHeader(http.StatusOK)
}

func (s *Server) headBucket(req *request) {
	if _, err := s.store.bucket(req.bucket); err != nil {
		s.storeFailure(req, err)
		return
	}
	req.w.Header().Set("x-amz-bucket-region", "us-east-1")
	req.w.WriteHeader(http.StatusOK)
}

func (s *Server) deleteBucket(req *request) {
	if err := s.store.deleteBucket(req.bucket); err != nil {
		s.storeFailure(req, err)
		return
	}
	req.w.WriteHeader(http.StatusNoContent)
}

// queryCount reads an optional non-negative integer query parameter:
// def when absent, at most limit. A bad value is answered InvalidArgument
// naming the parameter, and ok is false.
func (s *Server) queryCount(req *request, name string, def, limit int) (n int, ok bool) {
	v := req.query.Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		s.writeError(req, invalidArgument(name+" must be a non-negative integer"))
		return 0, false
	}
	return min(n, limit), true
}

// --- ListObjectsV2 ---

const listKeysMax = 1000

func (s *Server) listObjects(req *request) {
	q := req.query
	maxKeys, ok := s.queryCount(req, "max-keys", listKeysMax, listKeysMax)
	if !ok {
		return
	}
	res := listBucketResult{Name: req.bucket, Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"),
		MaxKeys: maxKeys, StartAfter: q.Get("start-after"), ContinuationToken: q.Get("continuation-token")}
	// The marker is the last key or common prefix already returned; the
	// continuation token is it, base64url-encoded so it stays opaque.
	marker := res.StartAfter
	if res.ContinuationToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(res.ContinuationToken)
		if err != nil {
			s.writeError(req, invalidArgument("The continuation token provided is incorrect"))
			return
		}
		marker = string(raw)
	}
	// Start at the marker (exclusive) or, when the prefix sorts after it,
	// at the prefix (inclusive): nothing before the prefix can match.
	pivot, inclusive := marker, false
	if res.Prefix > marker {
		pivot, inclusive = res.Prefix, true
	}
	lastPrefix := marker // a rolled-up prefix is never returned twice
	last := ""
	err := s.store.ascend(req.bucket, pivot, inclusive, func(o *object) bool {
		if !strings.HasPrefix(o.key, res.Prefix) {
			return o.key < res.Prefix // before the prefix: go on; after: stop
		}
		cp := ""
		if res.Delimiter != "" {
			if i := strings.Index(o.key[len(res.Prefix):], res.Delimiter); i >= 0 {
				cp = o.key[:len(res.Prefix)+i+len(res.Delimiter)]
			}
		}
		if cp != "" && cp == lastPrefix {
			return true
		}
		if res.KeyCount == maxKeys {
			res.IsTruncated = maxKeys > 0
			return false
		}
		res.KeyCount++
		if cp != "" {
			lastPrefix = cp
			last = cp
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: cp})
			return true
		}
		last = o.key
		res.Contents = append(res.Contents, listEntry{Key: o.key, LastModified: o.modified.Format(s3TimeFormat),
			ETag: o.etag, Size: int64(len(o.data)), StorageClass: "STANDARD"})
		return true
	})
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	if res.IsTruncated {
		res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	s.writeXML(req, http.StatusOK, res)
}

// --- objects ---

func (s *Server) getObject(req *request) {
	o, err := s.store.get(req.bucket, req.key)
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	if o == nil {
		s.writeError(req, errNoSuchKeyAnswer)
		return
	}
	if im := req.r.Header.Get("If-Match"); im != "" && !etagMatches(im, o.etag) {
		s.writeError(req, errPreconditionAnswer)
		return
	}
	h := req.w.Header()
	h.Set("ETag", o.etag)
	h.Set("Last-Modified", o.modified.Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	if inm := req.r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, o.etag) {
		req.w.WriteHeader(http.StatusNotModified)
		return
	}
	size := int64(len(o.data))
	start, end, ranged, ok := parseRange(req.r.Header.Get("Range"), size)
	if pn := req.query.Get("partNumber"); pn != "" {
		n, err := strconv.Atoi(pn)
		if err != nil || n < 1 || n > partsMax {
			s.writeError(req, invalidArgument(fmt.Sprintf("partNumber must be an integer from 1 to %d", partsMax)))
			return
		}
		if req.r.Header.Get("Range") != "" {
			s.writeError(req, invalidRequest("Cannot specify both Range header and partNumber query parameter"))
			return
		}
		var parts int
		start, end, parts, ok = partRange(o, n)
		h.Set("x-amz-mp-parts-count", strconv.Itoa(parts))
		if !ok {
			h.Del("ETag")
			h.Del("Last-Modified")
			h.Del("Accept-Ranges")
			s.writeError(req, s3Error{http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "The requested partnumber is not satisfiable"})
			return
		}
		// S3 answers a part with 206 and its Content-Range, even when the
		// part is the whole object.
		ranged = true
	}
	if !ok {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		h.Del("ETag")
		h.Del("Last-Modified")
		h.Del("Accept-Ranges")
		s.writeError(req, errInvalidRangeAnswer)
		return
	}
	h.Set("Content-Type", o.contentType)
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	} else if strings.EqualFold(req.r.Header.Get("x-amz-checksum-mode"), "ENABLED") {
		// Only on whole-object answers: the checksum covers the whole
		// object, and a client validating it against a range would fail.
		h.Set("x-amz-checksum-"+strings.ToLower(o.checksumAlgo), o.checksum)
		h.Set("x-amz-checksum-type", "FULL_OBJECT")
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	req.w.WriteHeader(status)
	if req.r.Method != http.MethodHead {
		req.w.Write(o.data[start:end])
	}
}

// parseRange parses a single "bytes=" range against an object of size
// bytes and returns the half-open byte interval [start, end). ranged is
// false when the whole object is to be sent (no header, or one S3 ignores:
// not "bytes=", several ranges, syntax errors); ok is false when the range
// cannot be satisfied.
func parseRange(h string, size int64) (start, end int64, ranged, ok bool) {
	spec, isBytes := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if h == "" || !isBytes || strings.Contains(spec, ",") {
		return 0, size, false, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size, false, true
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, size, false, true
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		return size - min(n, size), size, true, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, size, false, true
	}
	b := size - 1
	if last != "" {
		b, err = strconv.ParseInt(last, 10, 64)
		if err != nil || b < a {
			return 0, size, false, true
		}
	}
	if a >= size {
		return 0, 0, true, false
	}
	return a, min(b, size-1) + 1, true, true
}

func (s *Server) putObject(req *request) {
	if err := validKey(req.key); err != nil {
		s.writeError(req, s3Error{http.StatusBadRequest, "KeyTooLongError", err.Error()})
		return
	}
	var cond putCondition
	if inm := req.r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) != "*" {
			s.writeError(req, errNotImplAnswer)
			return
		}
		cond.ifNoneMatchAny = true
	}
	cond.ifMatch = req.r.Header.Get("If-Match")
	data, serr := s.readObjectBody(req)
	if serr != nil {
		s.writeError(req, *serr)
		return
	}
	algo, sum := "CRC32", checksumBase64(crc32.NewIEEE(), data)
	if a, v, found := s.suppliedChecksum(req); found {
		algo, sum = a, v
	}
	ct := req.r.Header.Get("Content-Type")
	if ct == "" {
		ct = "binary/octet-stream"
	}
	o := &object{key: req.key, data: data, etag: etagOf(data), modified: time.Now().UTC(),
		contentType: ct, checksumAlgo: algo, checksum: sum}
	if err := s.store.put(req.bucket, o, cond); err != nil {
		s.storeFailure(req, err)
		return
	}
	h := req.w.Header()
	h.Set("ETag", o.etag)
	h.Set("x-amz-checksum-"+strings.ToLower(algo), sum)
	h.Set("Content-Length", "0")
	req.w.WriteHeader(http.StatusOK)
}

// checksumAlgos are the x-amz-checksum-* algorithms the server verifies.
var checksumAlgos = []string{"CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"}

// crc64NVMETable is CRC-64/NVME (reflected polynomial; hash/crc64's
// all-ones init and final xor are the algorithm's).
var crc64NVMETable = crc64.MakeTable(0x9a6c9329ac4bc9b5)

func (s *Server) newChecksum(algo string) hash.Hash {
	switch algo {
	case "CRC32":
		return crc32.NewIEEE()
	case "CRC32C":
		return crc32.New(s.crc32c)
	case "SHA1":
		return sha1.New()
	case "CRC64NVME":
		return crc64.New(crc64NVMETable)
	case "SHA256":
		return sha256.New()
	}
	return nil
}

// suppliedChecksum returns the checksum the client sent in a header or a
// trailer, already verified by readObjectBody.
func (s *Server) suppliedChecksum(req *request) (algo, value string, found bool) {
	for _, a := range checksumAlgos {
		if v := req.r.Header.Get("x-amz-checksum-" + strings.ToLower(a)); v != "" {
			return a, v, true
		}
		if v := req.r.Trailer.Get("x-amz-checksum-" + strings.ToLower(a)); v != "" {
			return a, v, true
		}
	}
	return "", "", false
}

// readObjectBody reads and verifies a PUT body: plain, chunked (decoded by
// the HTTP server) or aws-chunked; Content-MD5, x-amz-content-sha256 and
// x-amz-checksum-* headers and trailers are checked against the data.
func (s *Server) readObjectBody(req *request) ([]byte, *s3Error) {
	r := req.r
	streaming := strings.HasPrefix(r.Header.Get("x-amz-content-sha256"), "STREAMING-") ||
		strings.Contains(strings.ToLower(r.Header.Get("Content-Encoding")), "aws-chunked")
	var data []byte
	var trailers []trailer
	if streaming {
		var err error
		data, trailers, err = decodeAWSChunked(r.Body, s.opts.ObjectBytesMax)
		switch {
		case errors.Is(err, errChunkTooBig):
			return nil, &errTooLargeAnswer
		case err != nil:
			e := errIncompleteAnswer
			e.msg = err.Error()
			return nil, &e
		}
		if dl := r.Header.Get("x-amz-decoded-content-length"); dl != "" && dl != strconv.Itoa(len(data)) {
			e := errIncompleteAnswer
			e.msg = fmt.Sprintf("x-amz-decoded-content-length %s, body decoded to %d bytes", dl, len(data))
			return nil, &e
		}
		// Expose the trailers the same way net/http exposes HTTP trailers.
		if r.Trailer == nil {
			r.Trailer = make(http.Header)
		}
		for _, t := range trailers {
			r.Trailer.Set(t.name, t.value)
		}
		for _, want := range strings.Split(r.Header.Get("x-amz-trailer"), ",") {
			if want = strings.TrimSpace(want); want != "" && r.Trailer.Get(want) == "" {
				e := invalidRequest("declared trailer " + want + " is missing")
				return nil, &e
			}
		}
	} else {
		var err error
		data, err = io.ReadAll(io.LimitReader(r.Body, s.opts.ObjectBytesMax+1))
		if err != nil {
			e := errIncompleteAnswer
			e.msg = err.Error()
			return nil, &e
		}
		if int64(len(data)) > s.opts.ObjectBytesMax {
			return nil, &errTooLargeAnswer
		}
		if sha := r.Header.Get("x-amz-content-sha256"); len(sha) == 64 {
			sum := sha256.Sum256(data)
			if !strings.EqualFold(sha, hex.EncodeToString(sum[:])) {
				return nil, &errSHA256Answer
			}
		}
	}
	if e := verifyContentMD5(r.Header.Get("Content-MD5"), data); e != nil {
		return nil, e
	}
	if e := s.verifyChecksums(r, data); e != nil {
		return nil, e
	}
	return data, nil
}

func verifyContentMD5(h string, data []byte) *s3Error {
	if h == "" {
		return nil
	}
	want, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(want) != md5.Size {
		return &errInvalidDigestAnswer
	}
	got := md5.Sum(data)
	if !bytes.Equal(want, got[:]) {
		return &errBadDigestAnswer
	}
	return nil
}

func (s *Server) verifyChecksums(r *http.Request, data []byte) *s3Error {
	for _, src := range []http.Header{r.Header, r.Trailer} {
		for name, values := range src {
			algo, isChecksum := strings.CutPrefix(strings.ToLower(name), "x-amz-checksum-")
			if !isChecksum || algo == "mode" || algo == "type" || algo == "algorithm" || len(values) == 0 {
				continue
			}
			h := s.newChecksum(strings.ToUpper(algo))
			if h == nil {
				e := invalidRequest("checksum algorithm " + algo + " is not supported by this server")
				return &e
			}
			if _, err := base64.StdEncoding.DecodeString(values[0]); err != nil {
				return &errInvalidDigestAnswer
			}
			if checksumBase64(h, data) != values[0] {
				return &errBadDigestAnswer
			}
		}
	}
	return nil
}

func checksumBase64(h hash.Hash, data []byte) string {
	h.Write(data)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// etagMatches compares an If-Match/If-None-Match header (a list of
// possibly weak, quoted ETags, or "*") with an object's ETag.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag || `"`+t+`"` == etag {
			return true
		}
	}
	return false
}

func (s *Server) deleteObject(req *request) {
	if im := req.r.Header.Get("If-Match"); im != "" {
		// Conditional delete: only the object with this ETag goes; a
		// missing key succeeds (nothing to delete), another ETag is 412.
		if err := s.store.removeIfMatch(req.bucket, req.key, im); err != nil {
			s.storeFailure(req, err)
			return
		}
		req.w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := s.store.remove(req.bucket, req.key); err != nil {
		s.storeFailure(req, err)
		return
	}
	req.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteObjects(req *request) {
	body, err := io.ReadAll(io.LimitReader(req.r.Body, deleteBodyBytesMax+1))
	if err != nil {
		e := errIncompleteAnswer
		e.msg = err.Error()
		s.writeError(req, e)
		return
	}
	if len(body) > deleteBodyBytesMax {
		s.writeError(req, errMalformedXMLAnswer)
		return
	}
	if e := verifyContentMD5(req.r.Header.Get("Content-MD5"), body); e != nil {
		s.writeError(req, *e)
		return
	}
	if e := s.verifyChecksums(req.r, body); e != nil {
		s.writeError(req, *e)
		return
	}
	dr, err := parseDeleteRequest(body)
	if err != nil {
		s.writeError(req, errMalformedXMLAnswer)
		return
	}
	if _, err := s.store.bucket(req.bucket); err != nil {
		s.storeFailure(req, err)
		return
	}
	var res deleteResult
	keys := make([]string, 0, len(dr.Objects))
	for _, o := range dr.Objects {
		if err := validKey(o.Key); err != nil {
			res.Errors = append(res.Errors, deleteErrItem{Key: o.Key, Code: "InvalidArgument", Message: err.Error()})
			continue
		}
		keys = append(keys, o.Key)
	}
	if err := s.store.remove(req.bucket, keys...); err != nil {
		for _, k := range keys {
			res.Errors = append(res.Errors, deleteErrItem{Key: k, Code: "InternalError", Message: err.Error()})
		}
		s.log.Error("fakes3: delete objects", "bucket", req.bucket, "err", err)
	} else if !dr.Quiet {
		for _, k := range keys {
			res.Deleted = append(res.Deleted, deletedEntry{Key: k})
		}
	}
	s.writeXML(req, http.StatusOK, res)
}

// dropConnection closes the client's connection without an answer. Where
// the host cannot hand the connection over, it answers 500 instead, so the
// fault is still visible to the client.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	w.WriteHeader(http.StatusInternalServerError)
}

// heldAnswer records an answer to send later (Fault.AnswerLatency). Its
// header is the real writer's: nothing is sent before WriteHeader.
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldAnswer) Header() http.Header         { return h.header }
func (h *heldAnswer) Write(p []byte) (int, error) { return h.body.Write(p) }
func (h *heldAnswer) WriteHeader(status int)      { h.status = status }

// discardWriter swallows an answer that is never to be sent.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
