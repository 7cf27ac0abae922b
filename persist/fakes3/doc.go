// Package fakes3 is a fake Amazon S3 service for tests and development: the
// subset of S3 that WeaselDB's S3 log backend uses and that common S3
// clients need (tested with aws-sdk-go-v2 including its manager
// Uploader and transfermanager, minio-go and awscli), with fault injection for reliability
// tests.
//
// # Using it
//
//  1. Build a server: srv, err := fakes3.New(fakes3.Options{Buckets: []string{"b"}}).
//     Options.Dir keeps objects in a directory across restarts.
//  2. Host it: *Server is an http.Handler. ListenTCP hosts it on net/http
//     on a loopback port and returns its endpoint URL.
//  3. Point a client at it with path-style addressing (aws-sdk-go-v2:
//     o.UsePathStyle = true, BaseEndpoint = the URL). Any credentials work.
//  4. Misbehave on demand: srv.Faults().Set(fakes3.Fault{...}, fakes3.OpPutObject),
//     Pause/Resume, Clear.
//
// Main is the standalone command ("weaseldb fakes3 --listen ... --dir ...").
//
// # What is implemented
//
// Path-style addressing only ("/<bucket>/<key>"). Operations:
//
//   - Buckets: ListBuckets, CreateBucket, HeadBucket, DeleteBucket (also
//     drops the bucket's uploads in progress), GetBucketLocation (always
//     us-east-1).
//   - ListObjectsV2: prefix, delimiter, max-keys ≤ 1000,
//     continuation-token, start-after, common prefixes, KeyCount,
//     IsTruncated; encoding-type is ignored.
//   - PutObject; GetObject and HeadObject (single Range: 206 with
//     Content-Range, 416 InvalidRange; partNumber: one part of a multipart
//     object, or the whole of another as its part 1, with
//     x-amz-mp-parts-count, 416 InvalidPartNumber; If-Match, If-None-Match);
//     DeleteObject (If-Match: a conditional delete, 412 on another ETag);
//     DeleteObjects (XML body, Quiet, ≤ 1000 keys, per-key results).
//   - CopyObject (x-amz-copy-source within or across buckets, metadata
//     directive COPY or REPLACE, x-amz-copy-source-if-match and
//     -if-none-match, If-Match and If-None-Match: * on the target).
//   - Multipart: CreateMultipartUpload (x-amz-checksum-algorithm),
//     UploadPart, UploadPartCopy (x-amz-copy-source-range),
//     CompleteMultipartUpload, AbortMultipartUpload,
//     ListParts (max-parts, part-number-marker), ListMultipartUploads
//     (prefix, max-uploads, key-marker, upload-id-marker). Completion
//     follows S3's rules: at least one part, ascending part numbers
//     (InvalidPartOrder), each part uploaded with the listed ETag and
//     checksums (InvalidPart), every part but the last ≥ 5 MiB
//     (EntityTooSmall), ≤ 10,000 parts, the whole ≤ Options.ObjectBytesMax
//     (EntityTooLarge); If-Match and If-None-Match: * as on PutObject. The
//     ETag is S3's multipart form, "<MD5 of the parts' MD5s>-<parts>".
//     Uploads in progress are bounded by Options.UploadsMax and
//     Options.UploadBytesMax (--max-uploads, --max-upload-bytes): past
//     either, CreateMultipartUpload or UploadPart answers 400
//     InvalidRequest naming the bound, until uploads complete or are
//     aborted.
//
// Not implemented (501 NotImplemented): ListObjects v1,
// ListMultipartUploads with a delimiter, If-None-Match other than "*" on
// writes, and every other subresource (ACLs, policies, tagging,
// versioning, object lock, lifecycle, presigned POST, SelectObjectContent).
// Also absent: virtual-hosted addressing, user metadata (x-amz-meta-* is
// accepted and dropped), server-side encryption, storage classes.
//
// PutObject and UploadPart accept plain bodies, Transfer-Encoding: chunked,
// and aws-chunked bodies (see chunked.go for the framing:
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD with ";chunk-signature=" extensions,
// STREAMING-UNSIGNED-PAYLOAD-TRAILER and
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, trailers with and without
// x-amz-trailer-signature); a body that breaks the framing is answered
// IncompleteBody and stores nothing. They verify every x-amz-checksum-{crc32,
// crc32c,crc64nvme,sha1,sha256} they are given, in a header or a trailer, Content-MD5,
// a hex x-amz-content-sha256 and x-amz-decoded-content-length, answering
// BadDigest, XAmzContentSHA256Mismatch or IncompleteBody. If-None-Match: *
// answers 412 PreconditionFailed when the key exists, If-Match: <ETag> when
// it does not hold that ETag; the check and the store are one atomic step,
// so of two racing conditional PUTs exactly one wins. ETags are the quoted
// MD5 hex of the data (multipart: see above).
//
// An object remembers the checksum it was uploaded with (CRC32 computed by
// the server otherwise; for a multipart object, the algorithm named at
// creation computed over the whole object) and returns it on whole-object
// GET/HEAD answers when the client asks with x-amz-checksum-mode: ENABLED,
// as x-amz-checksum-type FULL_OBJECT (never COMPOSITE), never on a 206:
// a checksum of the whole object does not describe a range, and clients
// that validate response checksums would reject the range.
//
// # Authentication
//
// None. Any SigV4 (or no) signature is accepted and not verified: the fake
// exists to test storage semantics and failure handling, and the SDK's
// signing is exercised against an independent server (versitygw, see
// scripts/s3compat.sh) instead. Never expose it beyond loopback.
//
// # Storage
//
// Everything is held in memory. With Options.Dir each object is also a
// file, written to a temporary name, fsynced and renamed into place (and
// the directory fsynced) before the PUT is answered; a restart reloads
// them. Multipart uploads in progress are kept the same way (a directory
// per upload with its description and one file per part, see
// multipart_store.go), so an upload can go on after a restart. File names are hex and SHA-256 encodings of bucket and key, never
// the client's strings (see store).
//
// # Faults
//
// Per operation class (Op; OpMultipart covers every multipart call,
// CopyObject counts as OpPutObject): fixed and random extra latency before the
// request takes effect (so concurrent PUTs land out of order), fixed and
// random extra latency after it took effect and before the answer (the
// answers arrive in yet another order, possibly after the client gave up),
// a fraction of 503 SlowDown and 500 InternalError answers, a fraction of
// connections dropped before the request takes effect, a fraction dropped
// after it took effect (the client cannot tell whether its write
// happened), and a fraction held until the client gives up and applied
// only then (the write lands after its client saw a timeout; HoldLate
// holds those until ReleaseLate, for tests that choose the moment). Pause
// holds every new request until Resume. Switchable at any time from any
// goroutine.
package fakes3
