package tlsfront

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/netpoll"
)

// SelfSigned returns a PEM certificate and key for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weaseldb test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// echoServer is a real netpoll server whose POST /echo answers the body.
func echoServer(t *testing.T) *netpoll.Server { return echoServerB(t) }

func echoServerB(t testing.TB) *netpoll.Server {
	t.Helper()
	router, err := netpoll.NewRouter([]netpoll.Route{
		{Method: "POST", Path: "/echo", Handler: netpoll.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, r.Body)
		})), MaxBodyBytes: 8 << 20},
		{Method: "GET", Path: "/hello", Handler: netpoll.Buffered(func(ex *netpoll.Exchange, _ []byte) {
			ex.Respond(200, "text/plain", []byte("hello"))
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := netpoll.NewServer(netpoll.Config{Reactors: 1, DisableThreadPinning: true, IdleTimeout: 5 * time.Second}, router)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

// start returns a Front on a loopback port and a client trusting its
// self-signed certificate (loaded from files, as the server binary does).
func start(t *testing.T, opts Options) (*Front, *http.Client) {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Listen("127.0.0.1:0", cfg, echoServer(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return f, hc
}

func TestTLSRoundTrips(t *testing.T) {
	f, hc := start(t, Options{})
	url := "https://" + f.Addr().String()
	resp, err := hc.Get(url + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello" || resp.TLS == nil {
		t.Fatalf("GET /hello: %d %q tls=%v", resp.StatusCode, b, resp.TLS != nil)
	}
	// Bodies larger than a TLS record and the copy buffer, on keep-alive
	// connections from several goroutines.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				body := bytes.Repeat([]byte{byte('a' + g)}, 1+(i*97_001)%(3<<20))
				resp, err := hc.Post(url+"/echo", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
					t.Errorf("echo of %d bytes: status %d, %d bytes back, %v", len(body), resp.StatusCode, len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPlaintextClientRefused(t *testing.T) {
	f, _ := start(t, Options{})
	resp, err := http.Get("http://" + f.Addr().String() + "/hello")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("a plaintext request was served on the TLS listener")
		}
	}
}

func TestMaxConnections(t *testing.T) {
	f, hc := start(t, Options{MaxConnections: 1})
	url := "https://" + f.Addr().String()
	// Hold the only slot with a keep-alive connection.
	resp, err := hc.Get(url + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	other := &http.Client{Transport: hc.Transport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
	if resp, err := other.Get(url + "/hello"); err == nil {
		resp.Body.Close()
		t.Fatal("a connection over MaxConnections was served")
	}
	// Freeing the slot lets the next one in (the front notices the close
	// asynchronously: poll, with no timing asserted).
	hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := other.Get(url + "/hello")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %v", err)
		}
		other.CloseIdleConnections()
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHandshakeTimeoutClosesSilentClients(t *testing.T) {
	f, _ := start(t, Options{HandshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("a client that never handshakes was not closed: %v", err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	f, hc := start(t, Options{})
	url := "https://" + f.Addr().String()
	resp, err := hc.Get(url + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err := f.Close(); err != nil { // waits for every goroutine
		t.Fatal(err)
	}
	if _, err := hc.Get(url + "/hello"); err == nil {
		t.Fatal("served after Close")
	} else if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Logf("after Close: %v", err)
	}
}
