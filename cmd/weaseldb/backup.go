package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/weaseldb/weaseldb/internal/backup"
)

const backupUsage = `NAME
    weaseldb backup - continuous backup of a running server

SYNOPSIS
    weaseldb backup --url URL --to DIR [--retention-policy ID] [--token-file FILE]

DESCRIPTION
    Follows GET /v1/subscribe on URL (durable transactions, resuming with
    Last-Event-ID) and writes them to DIR as a disk-format log, one
    fdatasync per checkpoint. Restoring is starting a server on it:

        weaseldb --data-dir DIR

    which continues the same versions. The backup runs until SIGTERM or
    SIGINT (it writes what it received, then exits 0) and resumes where it
    stopped when started again on the same DIR. It holds DIR's lock while it
    runs, so no server starts on a backup being written.

    A new backup starts at the beginning of the server's log, so the server
    must still hold version 1 (no truncation yet); once running, a
    --retention-policy keeps the server from truncating what the backup has
    not got. Versions, request ids, operations and leader ids are the
    server's; timestamps keep the millisecond precision of the API.
    Retention policies are server state, not log content: they are not
    backed up.

OPTIONS
    --url URL               the server, http://host:port
    --to DIR                the backup directory (created if missing)
    --retention-policy ID   keep retention policy ID on the server at the
                            version the backup has written (needs the token
                            when the server requires one)
    --token-file FILE       bearer token (default: $WEASELDB_AUTH_TOKEN)
    -h, --help              this text

EXIT STATUS
    0 stopped by a signal; 1 the backup cannot continue (a gap, the server
    truncated past it, or it belongs to another log: the message says
    which); 2 bad usage.
`

// runBackup runs `weaseldb backup ...`.
func runBackup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weaseldb backup", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("url", "", "")
	dir := fs.String("to", "", "")
	policy := fs.String("retention-policy", "", "")
	tokenFile := fs.String("token-file", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, backupUsage)
			return 0
		}
		fmt.Fprintf(stderr, "weaseldb backup: %v (see weaseldb backup --help)\n", err)
		return 2
	}
	if fs.NArg() > 0 || *url == "" || *dir == "" {
		fmt.Fprintln(stderr, "weaseldb backup: --url and --to are required, and nothing else (see weaseldb backup --help)")
		return 2
	}
	token := strings.TrimSpace(os.Getenv("WEASELDB_AUTH_TOKEN"))
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "weaseldb backup: --token-file: %v\n", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := backup.Run(ctx, backup.Options{URL: strings.TrimRight(*url, "/"), Dir: *dir, Token: token, Policy: *policy, Logger: logger})
	if err != nil {
		logger.Error("backup stopped", "err", err)
		return 1
	}
	return 0
}
