package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Server.Listen != "127.0.0.1:8080" || c.Persist.Dir != "./data" || c.Persist.Backend != "disk" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestLoadOverlaysAndRoundTrips(t *testing.T) {
	c := Default()
	err := c.Load([]byte(`
[server]
listen = "127.0.0.1:9999"
[commit]
batch_interval = "500us"
max_in_flight = 16
[persist]
backend = "fakes3"
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:9999" || c.Commit.BatchInterval.Duration != 500*time.Microsecond ||
		c.Commit.MaxInFlight != 16 || c.Persist.Backend != "fakes3" {
		t.Fatalf("overlay not applied: %+v", c)
	}
	// Untouched fields keep their defaults.
	if c.Server.MaxKeyBytes != 8<<10 {
		t.Fatalf("default lost: %d", c.Server.MaxKeyBytes)
	}
	text, err := c.TOML(false)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if err := d.Load(text, "printed"); err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, text)
	}
	if d != c {
		t.Fatalf("round trip changed config:\n%+v\n%+v", d, c)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	c := Default()
	err := c.Load([]byte("[server]\nlisten_addr = \"x\"\n[bogus]\na = 1\n"), "test")
	if err == nil || !strings.Contains(err.Error(), "server.listen_addr") || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("want unknown-key error naming both keys, got %v", err)
	}
}

func TestBadDurationNamesValue(t *testing.T) {
	c := Default()
	err := c.Load([]byte("[commit]\nbatch_interval = \"fast\"\n"), "test")
	if err == nil || !strings.Contains(err.Error(), "fast") {
		t.Fatalf("want duration error, got %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Server.MaxConnections = 0
	c.Server.MaxPipelinedCommits = 0
	c.Commit.MaxInFlight = 5000
	c.Persist.Backend = "tape"
	c.Subscribe.KeepAlive = D(time.Minute)
	err := c.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{"server.max_connections = 0: allowed range 1..", "server.max_pipelined_commits = 0: allowed range 1..4096", "commit.max_in_flight = 5000", `persist.backend = "tape"`, "subscribe.keep_alive = 1m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	c := Default()
	c.Persist.AccessKeyID = "AKIA"
	c.Persist.SecretAccessKey = "very-secret"
	text, err := c.TOML(true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "very-secret") {
		t.Fatalf("secret printed:\n%s", text)
	}
	if c.Persist.SecretAccessKey != "very-secret" {
		t.Fatal("masking changed the caller's config")
	}
}

func TestValidateS3Names(t *testing.T) {
	for _, c := range []struct{ bucket, endpoint, want string }{
		{"Weasel_DB", "", "persist.bucket: bucket name \"Weasel_DB\": invalid character"},
		{"ab", "", "length must be 3 to 63"},
		{"-weasel", "", "must start and end"},
		{"weasel..db", "", "two adjacent periods"},
		{"weaseldb", "127.0.0.1:9000", "persist.endpoint = \"127.0.0.1:9000\": must start with http:// or https://"},
	} {
		cfg := Default()
		cfg.Persist.Backend, cfg.Persist.Bucket, cfg.Persist.Endpoint = "s3", c.bucket, c.endpoint
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bucket %q endpoint %q: %v, want %q", c.bucket, c.endpoint, err, c.want)
		}
	}
	cfg := Default()
	cfg.Persist.Backend, cfg.Persist.Bucket, cfg.Persist.Endpoint = "s3", "weasel.db-1", "http://127.0.0.1:9000"
	if err := cfg.Validate(); err != nil {
		t.Errorf("a valid bucket and endpoint: %v", err)
	}
}
