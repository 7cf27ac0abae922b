package fakes3

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// S3's multipart limits.
const (
	partsMax          = 10000
	partBytesMin      = 5 << 20 // every part but the last
	listPartsMax      = 1000
	listUploadsMax    = 1000
	completeBodyBytes = 4 << 20 // 10,000 parts with four checksums each
)

type initiateMultipartUploadResult struct {
	XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

// completeMultipartUpload is the request body; no namespace in the tags,
// as for deleteRequest.
type completeMultipartUpload struct {
	XMLName xml.Name       `xml:"CompleteMultipartUpload"`
	Parts   []completePart `xml:"Part"`
}

type completePart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
	partChecksums
}

// partChecksums are a part's x-amz-checksum values as S3's XML names them,
// in a Complete request and in a ListParts answer.
type partChecksums struct {
	ChecksumCRC32  string `xml:"ChecksumCRC32,omitempty"`
	ChecksumCRC32C string `xml:"ChecksumCRC32C,omitempty"`
	ChecksumCRC64  string `xml:"ChecksumCRC64NVME,omitempty"`
	ChecksumSHA1   string `xml:"ChecksumSHA1,omitempty"`
	ChecksumSHA256 string `xml:"ChecksumSHA256,omitempty"`
}

// field returns the field of algo (one of checksumAlgos), or nil.
func (c *partChecksums) field(algo string) *string {
	switch algo {
	case "CRC32":
		return &c.ChecksumCRC32
	case "CRC32C":
		return &c.ChecksumCRC32C
	case "CRC64NVME":
		return &c.ChecksumCRC64
	case "SHA1":
		return &c.ChecksumSHA1
	case "SHA256":
		return &c.ChecksumSHA256
	}
	return nil
}

// checksum returns the part checksum of algo the client listed, if any.
func (p completePart) checksum(algo string) string {
	if f := p.field(algo); f != nil {
		return *f
	}
	return ""
}

type completeMultipartUploadResult struct {
	XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

type listPartsResult struct {
	XMLName              xml.Name       `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListPartsResult"`
	Bucket               string         `xml:"Bucket"`
	Key                  string         `xml:"Key"`
	UploadID             string         `xml:"UploadId"`
	PartNumberMarker     int            `xml:"PartNumberMarker"`
	NextPartNumberMarker int            `xml:"NextPartNumberMarker"`
	MaxParts             int            `xml:"MaxParts"`
	IsTruncated          bool           `xml:"IsTruncated"`
	StorageClass         string         `xml:"StorageClass"`
	ChecksumAlgorithm    string         `xml:"ChecksumAlgorithm,omitempty"`
	Parts                []partEntryXML `xml:"Part"`
}

type partEntryXML struct {
	PartNumber   int    `xml:"PartNumber"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	partChecksums
}

type listMultipartUploadsResult struct {
	XMLName            xml.Name    `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListMultipartUploadsResult"`
	Bucket             string      `xml:"Bucket"`
	KeyMarker          string      `xml:"KeyMarker"`
	UploadIDMarker     string      `xml:"UploadIdMarker"`
	NextKeyMarker      string      `xml:"NextKeyMarker,omitempty"`
	NextUploadIDMarker string      `xml:"NextUploadIdMarker,omitempty"`
	Prefix             string      `xml:"Prefix"`
	MaxUploads         int         `xml:"MaxUploads"`
	IsTruncated        bool        `xml:"IsTruncated"`
	Uploads            []uploadXML `xml:"Upload"`
}

type uploadXML struct {
	Key          string `xml:"Key"`
	UploadID     string `xml:"UploadId"`
	Initiated    string `xml:"Initiated"`
	StorageClass string `xml:"StorageClass"`
}

type copyObjectResult struct {
	XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyObjectResult"`
	ETag         string   `xml:"ETag"`
	LastModified string   `xml:"LastModified"`
}

type locationConstraint struct {
	XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ LocationConstraint"`
	Region  string   `xml:",chardata"`
}

func (s *Server) createUpload(req *request) {
	if err := validKey(req.key); err != nil {
		s.writeError(req, s3Error{http.StatusBadRequest, "KeyTooLongError", err.Error()})
		return
	}
	algo := strings.ToUpper(req.r.Header.Get("x-amz-checksum-algorithm"))
	if algo != "" && !slices.Contains(checksumAlgos, algo) {
		s.writeError(req, invalidRequest("x-amz-checksum-algorithm "+algo+" is not supported by this server"))
		return
	}
	ct := req.r.Header.Get("Content-Type")
	if ct == "" {
		ct = "binary/octet-stream"
	}
	io.Copy(io.Discard, io.LimitReader(req.r.Body, 64<<10))
	u, err := s.store.createUpload(req.bucket, req.key, ct, algo)
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	if algo != "" {
		req.w.Header().Set("x-amz-checksum-algorithm", algo)
	}
	s.writeXML(req, http.StatusOK, initiateMultipartUploadResult{Bucket: req.bucket, Key: req.key, UploadID: u.id})
}

func (s *Server) uploadPart(req *request) {
	n, err := strconv.Atoi(req.query.Get("partNumber"))
	if err != nil || n < 1 || n > partsMax {
		s.writeError(req, invalidArgument(fmt.Sprintf("partNumber must be an integer from 1 to %d", partsMax)))
		return
	}
	data, serr := s.readObjectBody(req)
	if serr != nil {
		s.writeError(req, *serr)
		return
	}
	algo, sum := "", ""
	if a, v, found := s.suppliedChecksum(req); found {
		algo, sum = a, v
	}
	p := &object{key: strconv.Itoa(n), data: data, etag: etagOf(data), modified: time.Now().UTC(),
		checksumAlgo: algo, checksum: sum}
	if err := s.store.putPart(req.bucket, req.key, req.query.Get("uploadId"), n, p); err != nil {
		s.storeFailure(req, err)
		return
	}
	h := req.w.Header()
	h.Set("ETag", p.etag)
	if algo != "" {
		h.Set("x-amz-checksum-"+strings.ToLower(algo), sum)
	}
	h.Set("Content-Length", "0")
	req.w.WriteHeader(http.StatusOK)
}

func (s *Server) completeUpload(req *request) {
	var cond putCondition
	if inm := req.r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) != "*" {
			s.writeError(req, errNotImplAnswer)
			return
		}
		cond.ifNoneMatchAny = true
	}
	cond.ifMatch = req.r.Header.Get("If-Match")
	body, err := io.ReadAll(io.LimitReader(req.r.Body, completeBodyBytes+1))
	if err != nil {
		e := errIncompleteAnswer
		e.msg = err.Error()
		s.writeError(req, e)
		return
	}
	var cm completeMultipartUpload
	if len(body) > completeBodyBytes || xml.Unmarshal(body, &cm) != nil || len(cm.Parts) == 0 || len(cm.Parts) > partsMax {
		s.writeError(req, errMalformedXMLAnswer)
		return
	}
	u, stored, err := s.store.uploadParts(req.bucket, req.key, req.query.Get("uploadId"))
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	byNumber := make(map[int]*object, len(stored))
	for _, p := range stored {
		byNumber[p.number] = p.object
	}
	// Check everything before assembling anything.
	var total int64
	md5s := make([]byte, 0, md5.Size*len(cm.Parts))
	for i := 1; i < len(cm.Parts); i++ {
		if cm.Parts[i].PartNumber <= cm.Parts[i-1].PartNumber {
			s.writeError(req, errPartOrderAnswer)
			return
		}
	}
	for i, cp := range cm.Parts {
		p := byNumber[cp.PartNumber]
		if p == nil || !etagMatches(cp.ETag, p.etag) || strings.TrimSpace(cp.ETag) == "" {
			s.writeError(req, errInvalidPartAnswer)
			return
		}
		for _, algo := range checksumAlgos {
			if want := cp.checksum(algo); want != "" && (p.checksumAlgo != algo || p.checksum != want) {
				s.writeError(req, errInvalidPartAnswer)
				return
			}
		}
		if i < len(cm.Parts)-1 && len(p.data) < partBytesMin {
			e := errTooSmallAnswer
			e.msg = fmt.Sprintf("part %d is %d bytes; every part but the last must be at least %d bytes", cp.PartNumber, len(p.data), partBytesMin)
			s.writeError(req, e)
			return
		}
		total += int64(len(p.data))
		sum, _ := hex.DecodeString(strings.Trim(p.etag, `"`))
		md5s = append(md5s, sum...)
	}
	if total > s.opts.ObjectBytesMax {
		s.writeError(req, errTooLargeAnswer)
		return
	}
	data := make([]byte, 0, total)
	sizes := make([]int64, 0, len(cm.Parts))
	for _, cp := range cm.Parts {
		data = append(data, byNumber[cp.PartNumber].data...)
		sizes = append(sizes, int64(len(byNumber[cp.PartNumber].data)))
	}
	whole := md5.Sum(md5s)
	etag := fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(whole[:]), len(cm.Parts))
	// The object's checksum covers the whole object (FULL_OBJECT), in the
	// algorithm asked for at creation: any client can verify it on GET.
	algo := u.checksumAlgo
	if algo == "" {
		algo = "CRC32"
	}
	o := &object{key: req.key, data: data, etag: etag, modified: time.Now().UTC(),
		contentType: u.contentType, checksumAlgo: algo, checksum: checksumBase64(s.newChecksum(algo), data),
		partSizes: sizes}
	if err := s.store.putCompleting(req.bucket, o, cond, u.id); err != nil {
		s.storeFailure(req, err)
		return
	}
	loc := (&url.URL{Scheme: "http", Host: req.r.Host, Path: "/" + req.bucket + "/" + req.key}).String()
	s.writeXML(req, http.StatusOK, completeMultipartUploadResult{Location: loc, Bucket: req.bucket, Key: req.key, ETag: etag})
}

func (s *Server) abortUpload(req *request) {
	if err := s.store.abortUpload(req.bucket, req.key, req.query.Get("uploadId")); err != nil {
		s.storeFailure(req, err)
		return
	}
	req.w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listParts(req *request) {
	q := req.query
	maxParts, ok := s.queryCount(req, "max-parts", listPartsMax, listPartsMax)
	if !ok {
		return
	}
	marker, ok := s.queryCount(req, "part-number-marker", 0, math.MaxInt)
	if !ok {
		return
	}
	u, parts, err := s.store.uploadParts(req.bucket, req.key, q.Get("uploadId"))
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	res := listPartsResult{Bucket: req.bucket, Key: req.key, UploadID: u.id, PartNumberMarker: marker,
		MaxParts: maxParts, StorageClass: "STANDARD", ChecksumAlgorithm: u.checksumAlgo}
	for _, p := range parts {
		if p.number <= marker {
			continue
		}
		if len(res.Parts) == maxParts {
			res.IsTruncated = true
			break
		}
		e := partEntryXML{PartNumber: p.number, LastModified: p.modified.Format(s3TimeFormat), ETag: p.etag, Size: int64(len(p.data))}
		if f := e.field(p.checksumAlgo); f != nil {
			*f = p.checksum
		}
		res.Parts = append(res.Parts, e)
		res.NextPartNumberMarker = p.number
	}
	s.writeXML(req, http.StatusOK, res)
}

func (s *Server) listUploads(req *request) {
	q := req.query
	maxUploads, ok := s.queryCount(req, "max-uploads", listUploadsMax, listUploadsMax)
	if !ok {
		return
	}
	if q.Get("delimiter") != "" {
		s.writeError(req, errNotImplAnswer)
		return
	}
	uploads, err := s.store.listUploads(req.bucket)
	if err != nil {
		s.storeFailure(req, err)
		return
	}
	res := listMultipartUploadsResult{Bucket: req.bucket, KeyMarker: q.Get("key-marker"),
		UploadIDMarker: q.Get("upload-id-marker"), Prefix: q.Get("prefix"), MaxUploads: maxUploads}
	for _, u := range uploads {
		if !strings.HasPrefix(u.key, res.Prefix) {
			continue
		}
		// After the marker: a later key, or (with an upload id marker) the
		// same key and a later id.
		if res.KeyMarker != "" && (u.key < res.KeyMarker ||
			(u.key == res.KeyMarker && (res.UploadIDMarker == "" || u.id <= res.UploadIDMarker))) {
			continue
		}
		if len(res.Uploads) == maxUploads {
			res.IsTruncated = true
			break
		}
		res.Uploads = append(res.Uploads, uploadXML{Key: u.key, UploadID: u.id,
			Initiated: u.initiated.Format(s3TimeFormat), StorageClass: "STANDARD"})
		res.NextKeyMarker, res.NextUploadIDMarker = u.key, u.id
	}
	if !res.IsTruncated {
		res.NextKeyMarker, res.NextUploadIDMarker = "", ""
	}
	s.writeXML(req, http.StatusOK, res)
}

func (s *Server) bucketLocation(req *request) {
	if _, err := s.store.bucket(req.bucket); err != nil {
		s.storeFailure(req, err)
		return
	}
	s.writeXML(req, http.StatusOK, locationConstraint{}) // empty: us-east-1
}

type copyPartResult struct {
	XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyPartResult"`
	ETag         string   `xml:"ETag"`
	LastModified string   `xml:"LastModified"`
}

// copySource resolves x-amz-copy-source and its conditions; on failure it
// has answered.
func (s *Server) copySource(req *request) (*object, bool) {
	src, err := url.PathUnescape(req.r.Header.Get("x-amz-copy-source"))
	if err != nil {
		s.writeError(req, invalidArgument("x-amz-copy-source is not URL-encoded"))
		return nil, false
	}
	src, _, _ = strings.Cut(src, "?") // versionId: there are no versions
	srcBucket, srcKey, ok := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	if !ok || srcKey == "" {
		s.writeError(req, invalidArgument("x-amz-copy-source must be bucket/key"))
		return nil, false
	}
	from, err := s.store.get(srcBucket, srcKey)
	if err != nil {
		s.storeFailure(req, err)
		return nil, false
	}
	if from == nil {
		s.writeError(req, errNoSuchKeyAnswer)
		return nil, false
	}
	if im := req.r.Header.Get("x-amz-copy-source-if-match"); im != "" && !etagMatches(im, from.etag) {
		s.writeError(req, errPreconditionAnswer)
		return nil, false
	}
	if inm := req.r.Header.Get("x-amz-copy-source-if-none-match"); inm != "" && etagMatches(inm, from.etag) {
		s.writeError(req, errPreconditionAnswer)
		return nil, false
	}
	return from, true
}

// uploadPartCopy is UploadPartCopy: a part taken from an existing object,
// whole or x-amz-copy-source-range "bytes=first-last".
func (s *Server) uploadPartCopy(req *request) {
	n, err := strconv.Atoi(req.query.Get("partNumber"))
	if err != nil || n < 1 || n > partsMax {
		s.writeError(req, invalidArgument(fmt.Sprintf("partNumber must be an integer from 1 to %d", partsMax)))
		return
	}
	from, ok := s.copySource(req)
	if !ok {
		return
	}
	data := from.data
	if r := req.r.Header.Get("x-amz-copy-source-range"); r != "" {
		first, last, found := strings.Cut(strings.TrimPrefix(r, "bytes="), "-")
		a, errA := strconv.ParseInt(first, 10, 64)
		b, errB := strconv.ParseInt(last, 10, 64)
		if !strings.HasPrefix(r, "bytes=") || !found || errA != nil || errB != nil || a < 0 || b < a || b >= int64(len(data)) {
			s.writeError(req, invalidArgument("x-amz-copy-source-range must be bytes=first-last within the source object"))
			return
		}
		data = data[a : b+1]
	}
	p := &object{key: strconv.Itoa(n), data: data, etag: etagOf(data), modified: time.Now().UTC()}
	if err := s.store.putPart(req.bucket, req.key, req.query.Get("uploadId"), n, p); err != nil {
		s.storeFailure(req, err)
		return
	}
	s.writeXML(req, http.StatusOK, copyPartResult{ETag: p.etag, LastModified: p.modified.Format(s3TimeFormat)})
}

// copyObject is CopyObject: x-amz-copy-source "[/]bucket/key", URL-encoded;
// metadata is copied unless x-amz-metadata-directive is REPLACE.
func (s *Server) copyObject(req *request) {
	if err := validKey(req.key); err != nil {
		s.writeError(req, s3Error{http.StatusBadRequest, "KeyTooLongError", err.Error()})
		return
	}
	from, ok := s.copySource(req)
	if !ok {
		return
	}
	replace := strings.EqualFold(req.r.Header.Get("x-amz-metadata-directive"), "REPLACE")
	// Objects are immutable and replaced by pointer: the target holding
	// the very source object means a copy onto itself.
	if cur, _ := s.store.get(req.bucket, req.key); cur == from && !replace {
		s.writeError(req, invalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."))
		return
	}
	ct := from.contentType
	if replace {
		if ct = req.r.Header.Get("Content-Type"); ct == "" {
			ct = "binary/octet-stream"
		}
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
	o := &object{key: req.key, data: from.data, etag: from.etag, modified: time.Now().UTC(),
		contentType: ct, checksumAlgo: from.checksumAlgo, checksum: from.checksum, partSizes: from.partSizes}
	if err := s.store.put(req.bucket, o, cond); err != nil {
		s.storeFailure(req, err)
		return
	}
	s.writeXML(req, http.StatusOK, copyObjectResult{ETag: o.etag, LastModified: o.modified.Format(s3TimeFormat)})
}

// partRange returns the byte interval [start, end) of part n (from 1) of
// o: its part of a multipart object, or the whole object as part 1 of
// one. ok is false when o has no part n.
func partRange(o *object, n int) (start, end int64, parts int, ok bool) {
	if len(o.partSizes) == 0 {
		return 0, int64(len(o.data)), 1, n == 1
	}
	if n < 1 || n > len(o.partSizes) {
		return 0, 0, len(o.partSizes), false
	}
	for _, size := range o.partSizes[:n-1] {
		start += size
	}
	return start, start + o.partSizes[n-1], len(o.partSizes), true
}
