package fakes3

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// awsCLI runs the aws command line tool (Debian's awscli package; .ci/run
// installs it) against endpoint e, with a private configuration:
// path-style addressing, fixed credentials, nothing from the user's home.
type awsCLI struct {
	url string
	env []string
}

func newAWSCLI(t *testing.T, e *endpoint) *awsCLI {
	t.Helper()
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the aws command line tool is not installed (apt-get install awscli; .ci/run does): skipping the awscli tests")
	}
	home := t.TempDir()
	config := filepath.Join(home, "config")
	if err := os.WriteFile(config, []byte("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "AWS_CONFIG_FILE=" + config,
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_ACCESS_KEY_ID=AKIDCLI", "AWS_SECRET_ACCESS_KEY=secretcli", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=", "LC_ALL=C.UTF-8"}
	return &awsCLI{url: e.URL, env: env}
}

// run runs aws with args and returns its stdout, stderr and error.
func (a *awsCLI) run(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "aws", append([]string{"--endpoint-url", a.url}, args...)...)
	cmd.Env = a.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (a *awsCLI) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := a.run(args...)
	if err != nil && strings.Contains(errOut, "Unknown options") {
		// An older awscli than the option needs: its limit, not ours.
		t.Skipf("this awscli lacks an option of: aws %s\n%s", strings.Join(args, " "), errOut)
	}
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// TestAWSCLI: aws s3 cp up, down and S3-to-S3 of a 40 MiB file (multipart, UploadPartCopy), s3 sync
// of 500 small files, s3 rm --recursive, s3api put-object with
// --if-none-match and with checksum algorithms.
func TestAWSCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the awscli suite runs in the full (non-short) test run")
	}
	_, e := startServer(t, Options{}, hostNetpollTCP) // what `weaseldb fakes3` serves with
	cli := newAWSCLI(t, e)
	c := newClient(t, e, clientConfig{})
	ctx := context.Background()
	dir := t.TempDir()
	s3url := "s3://" + testBucket

	t.Run("cp-40MiB", func(t *testing.T) {
		big := randomBytes(t, 40<<20)
		up, down := filepath.Join(dir, "up.bin"), filepath.Join(dir, "down.bin")
		if err := os.WriteFile(up, big, 0o600); err != nil {
			t.Fatal(err)
		}
		cli.mustRun(t, "s3", "cp", "--only-show-errors", up, s3url+"/big/file.bin")
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("big/file.bin")})
		if err != nil || aws.ToInt64(head.ContentLength) != int64(len(big)) || !strings.HasSuffix(aws.ToString(head.ETag), `-5"`) {
			t.Fatalf("uploaded object: %+v %v (want a 5-part multipart object)", head, err)
		}
		cli.mustRun(t, "s3", "cp", "--only-show-errors", s3url+"/big/file.bin", down)
		got, err := os.ReadFile(down)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("downloaded %d bytes (%v), not the %d uploaded", len(got), err, len(big))
		}
		// S3 to S3 above the multipart threshold: UploadPartCopy.
		cli.mustRun(t, "s3", "cp", "--only-show-errors", s3url+"/big/file.bin", s3url+"/big/copy.bin")
		if got := getAll(t, c, "big/copy.bin"); !bytes.Equal(got, big) {
			t.Fatalf("copied object: %d bytes, not the %d uploaded", len(got), len(big))
		}
	})

	t.Run("sync-500-and-rm", func(t *testing.T) {
		src := filepath.Join(dir, "sync")
		for i := range 500 {
			sub := filepath.Join(src, fmt.Sprintf("d%d", i%7))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.txt", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cli.mustRun(t, "s3", "sync", "--only-show-errors", src, s3url+"/sync")
		if n := countKeys(t, c, "sync/"); n != 500 {
			t.Fatalf("after sync: %d keys, want 500", n)
		}
		// A second sync has nothing to do, and says so by printing nothing.
		if out := cli.mustRun(t, "s3", "sync", src, s3url+"/sync"); strings.TrimSpace(out) != "" {
			t.Fatalf("second sync copied again:\n%s", out)
		}
		cli.mustRun(t, "s3", "rm", "--only-show-errors", "--recursive", s3url+"/sync")
		if n := countKeys(t, c, "sync/"); n != 0 {
			t.Fatalf("after rm --recursive: %d keys left", n)
		}
	})

	t.Run("s3api-if-none-match", func(t *testing.T) {
		body := filepath.Join(dir, "small.txt")
		if err := os.WriteFile(body, []byte("once"), 0o600); err != nil {
			t.Fatal(err)
		}
		cli.mustRun(t, "s3api", "put-object", "--bucket", testBucket, "--key", "once", "--body", body, "--if-none-match", "*")
		_, errOut, err := cli.run("s3api", "put-object", "--bucket", testBucket, "--key", "once", "--body", body, "--if-none-match", "*")
		if err == nil || !strings.Contains(errOut, "PreconditionFailed") {
			t.Fatalf("second put-object --if-none-match '*': %v\n%s", err, errOut)
		}
	})

	t.Run("checksums", func(t *testing.T) {
		body := filepath.Join(dir, "sum.txt")
		data := []byte(strings.Repeat("checksum me ", 100))
		if err := os.WriteFile(body, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tested := 0
		for _, algo := range []string{"CRC32", "CRC32C", "SHA1", "SHA256"} { // what awscli v1 offers
			key := "cli-sum/" + algo
			_, errOut, err := cli.run("s3api", "put-object", "--bucket", testBucket, "--key", key, "--body", body, "--checksum-algorithm", algo)
			if err != nil && strings.Contains(errOut, "Missing Dependency") {
				// awscli v1 computes CRC32C only with botocore[crt].
				t.Logf("%s: this awscli cannot compute it: %s", algo, strings.TrimSpace(errOut))
				continue
			}
			if err != nil {
				t.Fatalf("%s put-object: %v\n%s", algo, err, errOut)
			}
			tested++
			out := cli.mustRun(t, "s3api", "head-object", "--bucket", testBucket, "--key", key, "--checksum-mode", "ENABLED")
			if want := checksumOf(algo, data); !strings.Contains(out, want) {
				t.Fatalf("%s: head-object does not show %s:\n%s", algo, want, out)
			}
			cli.mustRun(t, "s3", "cp", "--only-show-errors", "--checksum-algorithm", algo, body, s3url+"/cli-cp-sum/"+algo)
		}
		if tested < 3 {
			t.Fatalf("only %d checksum algorithms tested", tested)
		}
	})
}

func countKeys(t *testing.T, c *s3.Client, prefix string) int {
	t.Helper()
	n := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Contents)
	}
	return n
}
