package fakes3

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestCopyObjectAndBucketCalls: CopyObject (with metadata COPY and
// REPLACE, conditions, to another bucket), HeadBucket, ListBuckets and
// GetBucketLocation, as the SDK calls them.
func TestCopyObjectAndBucketCalls(t *testing.T) {
	_, e := startServer(t, Options{Buckets: []string{testBucket, "other-bucket"}})
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	src := "src dir/ünïcode+key"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(src),
		Body: strings.NewReader("copied"), ContentType: aws.String("text/x-src"), ChecksumAlgorithm: types.ChecksumAlgorithmSha1}); err != nil {
		t.Fatal(err)
	}
	copySource := testBucket + "/" + url.PathEscape(src)
	out, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("dst"), CopySource: aws.String(copySource)})
	if err != nil || aws.ToString(out.CopyObjectResult.ETag) != md5ETag([]byte("copied")) {
		t.Fatalf("CopyObject: %+v %v", out, err)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("dst"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToString(head.ContentType) != "text/x-src" || aws.ToString(head.ChecksumSHA1) != checksumOf("SHA1", []byte("copied")) {
		t.Fatalf("copied object: %+v %v", head, err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String(src), CopySource: aws.String(copySource)}); apiCode(err) != "InvalidRequest" {
		t.Fatalf("copy onto itself without REPLACE: %v", err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String(src), CopySource: aws.String(copySource),
		MetadataDirective: types.MetadataDirectiveReplace, ContentType: aws.String("text/x-new")}); err != nil {
		t.Fatalf("copy onto itself with REPLACE: %v", err)
	}
	if head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(src)}); err != nil || aws.ToString(head.ContentType) != "text/x-new" {
		t.Fatalf("after REPLACE: %+v %v", head, err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String("x"), CopySource: aws.String(testBucket + "/missing")}); apiCode(err) != "NoSuchKey" {
		t.Fatalf("copy of a missing key: %v", err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String("x"), CopySource: aws.String(copySource),
		CopySourceIfMatch: aws.String(md5ETag([]byte("other")))}); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("copy with a failing x-amz-copy-source-if-match: %v", err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("dst"), CopySource: aws.String(copySource),
		IfNoneMatch: aws.String("*")}); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("copy with If-None-Match: * onto an existing key: %v", err)
	}

	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("no-such-bucket")}); httpStatus(err) != 404 {
		t.Fatalf("HeadBucket of a missing bucket: %v", err)
	}
	lb, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(lb.Buckets) != 2 || aws.ToString(lb.Buckets[0].Name) != "other-bucket" {
		t.Fatalf("ListBuckets: %+v %v", lb, err)
	}
	loc, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(testBucket)})
	if err != nil || loc.LocationConstraint != "" {
		t.Fatalf("GetBucketLocation: %+v %v", loc, err)
	}
	if _, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("no-such-bucket")}); apiCode(err) != "NoSuchBucket" {
		t.Fatalf("GetBucketLocation of a missing bucket: %v", err)
	}
}

// TestUploadPartCopy: parts copied from an existing object, whole and by
// range, make a multipart object (what aws s3 cp does between keys above
// its multipart threshold).
func TestUploadPartCopy(t *testing.T) {
	_, e := startServer(t, Options{})
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	src := randomBytes(t, 7<<20)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("src"), Body: bytes.NewReader(src)}); err != nil {
		t.Fatal(err)
	}
	m := newMP(t, c, "dst")
	var parts []types.CompletedPart
	for i, r := range []string{"bytes=0-5242879", "bytes=5242880-7340031"} {
		out, err := c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String(testBucket), Key: aws.String("dst"), UploadId: aws.String(m.id),
			PartNumber: aws.Int32(int32(i + 1)), CopySource: aws.String(testBucket + "/src"), CopySourceRange: aws.String(r)})
		if err != nil {
			t.Fatalf("UploadPartCopy %s: %v", r, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.CopyPartResult.ETag})
	}
	if _, err := c.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String(testBucket), Key: aws.String("dst"), UploadId: aws.String(m.id),
		PartNumber: aws.Int32(3), CopySource: aws.String(testBucket + "/src"), CopySourceRange: aws.String("bytes=0-99999999")}); apiCode(err) != "InvalidArgument" {
		t.Fatalf("range past the end: %v", err)
	}
	out, err := m.complete(parts)
	if err != nil || aws.ToString(out.ETag) != multipartETag(src[:5<<20], src[5<<20:]) {
		t.Fatalf("complete: %+v %v", out, err)
	}
	if got := getAll(t, c, "dst"); !bytes.Equal(got, src) {
		t.Fatalf("copied object: %d bytes", len(got))
	}
}
