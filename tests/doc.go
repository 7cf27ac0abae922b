// Package tests is WeaselDB's end-to-end suite: it builds the real
// bin/weaseldb once (TestMain), starts it on 127.0.0.1:0 with a temporary
// data directory and a small TOML configuration per test, and talks to it
// over real TCP — through github.com/weaseldb/weaseldb/client where the client fits, and through
// raw net/http where a test checks the wire (error bodies, headers, SSE
// framing, Last-Event-ID).
//
// # Running it
//
//	go test ./tests/                  # everything, a few tens of seconds
//	go test -short ./tests/           # the quick subset
//	go test -run 'Backends/fakes3' -v ./tests/
//
// Backends: every test in backends_test.go runs on the disk log, and also on
// fakes3 (the in-process fake S3 of `weaseldb --persist fakes3`) and on s3
// (the server pointed at a standalone `weaseldb fakes3`) when the binary
// supports them; otherwise those subtests are skipped with the reason.
//
// The suite never asserts a duration: waits are "until a condition holds,
// with a generous deadline", because the machine running it is shared.
package tests
