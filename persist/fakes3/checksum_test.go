package fakes3

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func checksumOf(algo string, data []byte) string {
	var h hash.Hash
	switch algo {
	case "CRC32":
		h = crc32.NewIEEE()
	case "CRC32C":
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "CRC64NVME":
		h = crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5))
	case "SHA1":
		h = sha1.New()
	case "SHA256":
		h = sha256.New()
	}
	h.Write(data)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func headChecksum(out *s3.HeadObjectOutput, algo string) string {
	switch algo {
	case "CRC32":
		return aws.ToString(out.ChecksumCRC32)
	case "CRC32C":
		return aws.ToString(out.ChecksumCRC32C)
	case "CRC64NVME":
		return aws.ToString(out.ChecksumCRC64NVME)
	case "SHA1":
		return aws.ToString(out.ChecksumSHA1)
	}
	return aws.ToString(out.ChecksumSHA256)
}

// TestChecksumsEveryAlgorithm: for each x-amz-checksum algorithm, sent in
// a header (plain HTTP) and in an aws-chunked trailer (the SDK's TLS
// path), on PutObject and UploadPart: the server verifies it, stores it
// and returns it with checksum mode enabled.
func TestChecksumsEveryAlgorithm(t *testing.T) {
	_, e := startServer(t, Options{})
	ctx := context.Background()
	data := []byte(strings.Repeat("checksummed ", 1000))
	for _, https := range []bool{false, true} {
		c := newClient(t, e, clientConfig{https: https})
		for _, algo := range checksumAlgos {
			key := "sum/" + algo + "/" + strconv.FormatBool(https)
			_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
				Body: bytes.NewReader(data), ChecksumAlgorithm: types.ChecksumAlgorithm(algo)})
			if err != nil {
				t.Fatalf("%s PutObject (trailer %v): %v", algo, https, err)
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil || headChecksum(head, algo) != checksumOf(algo, data) {
				t.Fatalf("%s HeadObject: %q, want %q (%v)", algo, headChecksum(head, algo), checksumOf(algo, data), err)
			}
			// Multipart with the same algorithm: parts verified, the
			// object's checksum returned over the whole object.
			cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key + "/mp"),
				ChecksumAlgorithm: types.ChecksumAlgorithm(algo)})
			if err != nil {
				t.Fatal(err)
			}
			up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key + "/mp"), UploadId: cu.UploadId,
				PartNumber: aws.Int32(1), Body: bytes.NewReader(data), ChecksumAlgorithm: types.ChecksumAlgorithm(algo)})
			if err != nil {
				t.Fatalf("%s UploadPart (trailer %v): %v", algo, https, err)
			}
			part := types.CompletedPart{PartNumber: aws.Int32(1), ETag: up.ETag, ChecksumCRC32: up.ChecksumCRC32,
				ChecksumCRC32C: up.ChecksumCRC32C, ChecksumCRC64NVME: up.ChecksumCRC64NVME, ChecksumSHA1: up.ChecksumSHA1, ChecksumSHA256: up.ChecksumSHA256}
			if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key + "/mp"),
				UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{part}}}); err != nil {
				t.Fatalf("%s CompleteMultipartUpload: %v", algo, err)
			}
			head, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key + "/mp"), ChecksumMode: types.ChecksumModeEnabled})
			if err != nil || headChecksum(head, algo) != checksumOf(algo, data) {
				t.Fatalf("%s multipart HeadObject: %q, want %q (%v)", algo, headChecksum(head, algo), checksumOf(algo, data), err)
			}
		}
	}
}

// TestUploadPartBadDigest: a part whose checksum (header or aws-chunked
// trailer) or Content-MD5 does not match is refused with BadDigest and
// not stored.
func TestUploadPartBadDigest(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	m := newMP(t, c, "bad")
	url := e.URL + "/" + testBucket + "/bad?partNumber=1&uploadId=" + m.id
	wrong := checksumOf("SHA256", []byte("other"))
	for name, tc := range map[string]struct {
		header http.Header
		body   string
	}{
		"checksum header": {http.Header{"X-Amz-Checksum-Sha256": {wrong}}, "data"},
		"Content-MD5":     {http.Header{"Content-Md5": {"1B2M2Y8AsgTpgAmY7PhCfg=="}}, "data"},
		"checksum trailer": {http.Header{"X-Amz-Content-Sha256": {"STREAMING-UNSIGNED-PAYLOAD-TRAILER"}, "Content-Encoding": {"aws-chunked"},
			"X-Amz-Trailer": {"x-amz-checksum-sha256"}, "X-Amz-Decoded-Content-Length": {"4"}},
			"4\r\ndata\r\n0\r\nx-amz-checksum-sha256:" + wrong + "\r\n\r\n"},
	} {
		req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "<Code>BadDigest</Code>") {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body.String())
		}
	}
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String("bad"), UploadId: aws.String(m.id)})
	if err != nil || len(lp.Parts) != 0 {
		t.Fatalf("a refused part was stored: %+v %v", lp, err)
	}
}

// TestCRC64NVMEKnownAnswer: the server's CRC-64/NVME is the standard one
// (check value of "123456789" from the CRC catalogue).
func TestCRC64NVMEKnownAnswer(t *testing.T) {
	h := crc64.New(crc64NVMETable)
	h.Write([]byte("123456789"))
	if got := h.Sum64(); got != 0xae8b14860a799888 {
		t.Fatalf("CRC-64/NVME of 123456789: %#x, want 0xae8b14860a799888", got)
	}
}
