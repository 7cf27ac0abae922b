package main

import (
	"fmt"
	"io"

	"weaseldb/config"
)

// serve runs the server until a signal stops it. Wired in the server issue.
func serve(cfg config.Config, stderr io.Writer) int {
	fmt.Fprintln(stderr, "weaseldb: the server is not wired yet")
	return 1
}

// runFakeS3 runs the standalone fake S3 server.
func runFakeS3(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "weaseldb fakes3: not wired yet")
	return 1
}
