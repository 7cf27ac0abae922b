package tlsfront

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
)

// Benchmarks of one keep-alive client doing POST /echo round trips of 4 KiB:
// through the Front (TLS, then a socketpair to the netpoll reactors), against
// the baseline net/http serving TLS itself, and plain netpoll without TLS
// (what the bridge costs on top of TLS is the difference to the baseline).
//
//	go test -run '^$' -bench . -benchtime=1s ./tlsfront/

var benchBody = bytes.Repeat([]byte("x"), 4<<10)

func roundTrips(b *testing.B, hc *http.Client, url string) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(benchBody)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(benchBody)) {
			b.Fatalf("echo returned %d bytes", n)
		}
	}
}

func BenchmarkFrontTLS(b *testing.B) {
	certPEM, keyPEM := selfSigned(b)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	srv := echoServerB(b)
	f, err := Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, srv, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	roundTrips(b, tlsClient(certPEM), "https://"+f.Addr().String()+"/echo")
}

func BenchmarkNetHTTPTLSBaseline(b *testing.B) {
	certPEM, keyPEM := selfSigned(b)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	// HTTP/1.1 like the Front (no h2), the body read before answering.
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Write(body)
		}),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go hs.Serve(ln)
	defer hs.Close()
	roundTrips(b, tlsClient(certPEM), "https://"+ln.Addr().String()+"/echo")
}

func BenchmarkNetpollPlain(b *testing.B) {
	srv := echoServerB(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := srv.Listen(addr); err != nil {
		b.Fatal(err)
	}
	roundTrips(b, &http.Client{}, "http://"+addr+"/echo")
}

func tlsClient(certPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
