package fakes3

import (
	"encoding/xml"
	"fmt"
	"unicode/utf8"
)

const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

// s3TimeFormat is the timestamp format of S3 XML documents.
const s3TimeFormat = "2006-01-02T15:04:05.000Z"

type errorDocument struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	BucketName string   `xml:"BucketName,omitempty"`
	Key        string   `xml:"Key,omitempty"`
	Resource   string   `xml:"Resource,omitempty"`
	RequestID  string   `xml:"RequestId"`
}

type listBucketResult struct {
	XMLName               xml.Name       `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	KeyCount              int            `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	Contents              []listEntry    `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

type listEntry struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

type listAllMyBucketsResult struct {
	XMLName xml.Name      `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListAllMyBucketsResult"`
	Owner   owner         `xml:"Owner"`
	Buckets []bucketEntry `xml:"Buckets>Bucket"`
}

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

type bucketEntry struct {
	Name         string `xml:"Name"`
	CreationDate string `xml:"CreationDate"`
}

// deleteRequest is the body of DeleteObjects. No namespace in the tags:
// clients send it with and without xmlns and encoding/xml then matches by
// local name.
type deleteRequest struct {
	XMLName xml.Name       `xml:"Delete"`
	Quiet   bool           `xml:"Quiet"`
	Objects []deleteObject `xml:"Object"`
}

type deleteObject struct {
	Key       string `xml:"Key"`
	VersionID string `xml:"VersionId"`
}

type deleteResult struct {
	XMLName xml.Name        `xml:"http://s3.amazonaws.com/doc/2006-03-01/ DeleteResult"`
	Deleted []deletedEntry  `xml:"Deleted"`
	Errors  []deleteErrItem `xml:"Error"`
}

type deletedEntry struct {
	Key string `xml:"Key"`
}

type deleteErrItem struct {
	Key     string `xml:"Key"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// deleteKeysMax is S3's limit on keys per DeleteObjects request.
const deleteKeysMax = 1000

// parseDeleteRequest decodes a DeleteObjects body. It rejects bodies that
// are not well-formed, name no object or more than deleteKeysMax. Keys are
// returned as sent; per-key validity is the caller's (it becomes a per-key
// error, not a failure of the whole request).
func parseDeleteRequest(body []byte) (deleteRequest, error) {
	var req deleteRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		return deleteRequest{}, fmt.Errorf("delete objects body: %w", err)
	}
	if len(req.Objects) == 0 {
		return deleteRequest{}, fmt.Errorf("delete objects body: no Object element")
	}
	if len(req.Objects) > deleteKeysMax {
		return deleteRequest{}, fmt.Errorf("delete objects body: %d keys, at most %d allowed", len(req.Objects), deleteKeysMax)
	}
	return req, nil
}

// keyBytesMax is S3's limit on the length of an object key.
const keyBytesMax = 1024

func validKey(key string) error {
	if key == "" || len(key) > keyBytesMax {
		return fmt.Errorf("key length %d: must be 1 to %d bytes", len(key), keyBytesMax)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("key is not valid UTF-8")
	}
	return nil
}
