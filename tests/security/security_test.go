// Package security checks the real weaseldb binary's bearer-token
// authentication (token from the environment or a file; required on every
// /v1/ route and /metrics, reads too; 401 with a JSON error, WWW-Authenticate
// and no state change otherwise; an empty token refused at start), TLS on
// the client listener with
// a certificate generated in the test, and that the pprof admin listener
// refuses a non-loopback address.
package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

const token = "s3cret-token-for-tests-0123456789"

func startAuth(t *testing.T, fromFile bool) *harness.Server {
	t.Helper()
	o := harness.Options{Bin: bin, DataDir: t.TempDir()}
	cfg := "[server]\n"
	if fromFile {
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth_token_file = %q\n", f)
	} else {
		o.Env = []string{"WEASELDB_AUTH_TOKEN=" + token}
	}
	o.Config = cfg
	srv, err := harness.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	return srv
}

type errBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// expect401 checks a 401 with the JSON error of API.md.
func expect401(t *testing.T, what string, code int, body errBody, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if code != 401 || body.Error != "unauthorized" || body.Message == "" {
		t.Fatalf("%s: HTTP %d %+v, want 401 unauthorized with a message", what, code, body)
	}
}

var commitBody = []byte(`{"operations":[{"type":"write","key":"a2V5","value":"dg=="}]}`)

func TestAuth(t *testing.T) {
	for _, fromFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("token from file %v", fromFile), func(t *testing.T) {
			srv := startAuth(t, fromFile)
			ctx := context.Background()
			hc := &http.Client{Timeout: 10 * time.Second, Transport: bearer{token, http.DefaultTransport}}
			v0, err := harness.Version(ctx, hc, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			hc = &http.Client{Timeout: 10 * time.Second}
			for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Bearer " + token + "x"}, {"Authorization", token}} {
				var b errBody
				code, err := harness.Do(ctx, hc, "POST", srv.URL+"/v1/commit", commitBody, &b, h...)
				expect401(t, fmt.Sprintf("commit with %q", h), code, b, err)
				code, err = harness.Do(ctx, hc, "PUT", srv.URL+"/v1/retention/p", []byte(`{"version":0}`), &b, h...)
				expect401(t, fmt.Sprintf("retention PUT with %q", h), code, b, err)
				code, err = harness.Do(ctx, hc, "DELETE", srv.URL+"/v1/retention/p", nil, &b, h...)
				expect401(t, fmt.Sprintf("retention DELETE with %q", h), code, b, err)
			}
			// Nothing changed.
			auth := []string{"Authorization", "Bearer " + token}
			var v harness.VersionInfo
			if code, err := harness.Do(ctx, hc, "GET", srv.URL+"/v1/version", nil, &v, auth...); err != nil || code != 200 || v.Version != v0.Version {
				t.Fatalf("after refused commits: version %d %+v %v, want %d", code, v, err, v0.Version)
			}
			// The right token works, through the Go client too.
			var ans harness.CommitAnswer
			if code, err := harness.Do(ctx, hc, "POST", srv.URL+"/v1/commit", commitBody, &ans, auth...); err != nil || code != 200 || ans.Version != v0.Version+1 {
				t.Fatalf("commit with the token: HTTP %d %+v %v", code, ans, err)
			}
			if code, err := harness.PutRetention(ctx, hc, srv.URL, "p", 1, auth...); err != nil || code != 200 {
				t.Fatalf("retention PUT with the token: HTTP %d %v", code, err)
			}
			c := client.New(srv.URL, client.WithHTTPClient(&http.Client{Transport: bearer{token, http.DefaultTransport}}))
			if res, err := c.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v"))); err != nil || res.Version != v0.Version+2 {
				t.Fatalf("client commit with the token: %+v %v", res, err)
			}
			noAuth := client.New(srv.URL, client.WithMaxAttempts(1))
			if _, err := noAuth.Commit(ctx, client.NewTxn().Write([]byte("k"), []byte("v"))); err == nil {
				t.Fatal("client commit without a token succeeded")
			} else {
				var apiErr *client.APIError
				if !errors.As(err, &apiErr) || apiErr.Status != 401 {
					t.Fatalf("client commit without a token: %v, want an APIError with status 401", err)
				}
			}
		})
	}
}

// bearer adds the Authorization header to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestAuthReads: with a token set, every read needs it too, /metrics
// included, and every 401 says WWW-Authenticate: Bearer (issues 13.6,
// 12.16). The probes stay open.
func TestAuthReads(t *testing.T) {
	srv := startAuth(t, false)
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	auth := []string{"Authorization", "Bearer " + token}
	reads := []string{"/v1/version", "/v1/retention/", "/v1/retention/p", "/metrics",
		"/v1/status?request_id=aaaaaaaaaaaaaaaaaaaaaaaa", "/v1/subscribe?after=0"}
	for _, path := range reads {
		for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}} {
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(h); i += 2 {
				req.Header.Set(h[i], h[i+1])
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b errBody
			derr := json.NewDecoder(resp.Body).Decode(&b)
			resp.Body.Close()
			expect401(t, fmt.Sprintf("GET %s with %q", path, h), resp.StatusCode, b, derr)
			if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
				t.Errorf("GET %s with %q: WWW-Authenticate %q, want Bearer", path, h, wa)
			}
		}
	}
	for _, path := range []string{"/v1/version", "/v1/retention/", "/metrics", "/v1/status?request_id=aaaaaaaaaaaaaaaaaaaaaaaa"} {
		if code, err := harness.Do(ctx, hc, "GET", srv.URL+path, nil, nil, auth...); err != nil || code != 200 {
			t.Errorf("GET %s with the token: HTTP %d %v", path, code, err)
		}
	}
	// Probes stay open: a load balancer has no token.
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, err := harness.Do(ctx, hc, "GET", srv.URL+path, nil, nil); err != nil || code != 200 {
			t.Errorf("GET %s without a token: HTTP %d %v, want 200", path, code, err)
		}
	}
}

// TestAuthEmptyToken: an empty token, from the environment or a file, is
// refused at start with exit 2 and one line naming its source, before any
// data is opened (issue 12.12).
func TestAuthEmptyToken(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "w.toml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("[server]\nauth_token_file = %q\n", empty)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		env  []string
		args []string
		want string
	}{
		{"empty WEASELDB_AUTH_TOKEN", []string{"WEASELDB_AUTH_TOKEN="}, nil, "WEASELDB_AUTH_TOKEN is set but empty"},
		{"blank WEASELDB_AUTH_TOKEN", []string{"WEASELDB_AUTH_TOKEN=  "}, nil, "WEASELDB_AUTH_TOKEN is set but empty"},
		{"empty token file", nil, []string{"--config", cfgFile}, "auth_token_file " + empty + ": empty"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		// Bounded: a server that accepts the token runs until killed.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin, append([]string{"--listen", "127.0.0.1:0", "--data-dir", dir}, c.args...)...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit status 2\n%s", c.what, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: output %q, want one line containing %q", c.what, out, c.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s: the data directory was created before the token was checked", c.what)
		}
	}
}

// TestAuthTokenFileMode: a token file readable by others is warned about.
func TestAuthTokenFileMode(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Config: fmt.Sprintf("[server]\nauth_token_file = %q\n", f)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	if log := srv.Log(); !strings.Contains(log, "readable by group or others") || !strings.Contains(log, `"level":"WARN"`) {
		t.Errorf("no warning about a world-readable token file:\n%s", log)
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "weaseldb security test"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), TLS: true,
		Config: fmt.Sprintf("[server]\ntls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("URL %s", srv.URL)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.New(srv.URL, client.WithHTTPClient(hc))
	var last uint64
	for i := range 20 {
		res, err := c.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i)), []byte(strings.Repeat("v", 40<<10))))
		if err != nil {
			t.Fatalf("commit over TLS: %v", err)
		}
		last = res.Version
	}
	log, err := harness.ReadLog(ctx, hc, srv.URL, 0, last)
	if err != nil {
		t.Fatalf("subscribe over TLS: %v", err)
	}
	if len(log) != int(last) {
		t.Fatalf("read %d transactions over TLS, want %d", len(log), last)
	}
	// Plain HTTP on the TLS port is not served.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + srv.Addr + "/v1/version"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
	// An untrusted client fails the handshake.
	untrusted := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	if _, err := untrusted.Get(srv.URL + "/v1/version"); err == nil {
		t.Fatal("a client without the CA completed a request")
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("graceful stop with TLS: %v\n%s", err, srv.Log())
	}
}

func TestAdminListenerLoopbackOnly(t *testing.T) {
	_, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Args: []string{"--admin-listen", "0.0.0.0:0"}})
	if !errors.Is(err, harness.ErrExited) || !strings.Contains(err.Error(), "allow_remote") {
		t.Fatalf("admin listener on 0.0.0.0: %v, want a refusal naming allow_remote", err)
	}
}
