// Package logtool is `weaseldb log`: offline tools that look inside a log —
// a disk data directory or an S3 prefix, chosen by the same [persist]
// settings as the server — without changing it.
//
//	weaseldb log stat    what is stored: files, segments, versions, terms, policies
//	weaseldb log verify  every frame/object, checksums, contiguity, term order, policies
//	weaseldb log dump    transactions as /v1/subscribe event JSON, one per line
//	weaseldb log copy    copy the log to another backend, verifying as it goes
//
// The tools read the log the way recovery does (persist/disk.Inspect,
// persist.PlanRecovery) and report what recovery would cut or refuse
// instead of doing it. On a disk directory they probe its LOCK file: if a
// server holds it they name it, and stat, verify and dump go on reading the
// live log while copy refuses. copy holds a shared lock while it reads, so
// no server starts on the source meanwhile.
package logtool

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/persist/s3log"
)

// Env is what the binary provides: opening the S3 backends needs the
// server's wiring (the in-process fake S3 of --persist fakes3).
type Env struct {
	// OpenS3 opens the S3 log of cfg ([persist] backend s3 or fakes3)
	// without recovering it; stop releases what runs beside it.
	OpenS3 func(ctx context.Context, cfg config.Config) (log *s3log.Log, stop func(), err error)
}

// Exit statuses.
const (
	exitOK      = 0
	exitProblem = 1 // verify found a problem; copy or dump failed
	exitUsage   = 2
)

const usage = `NAME
    weaseldb log - inspect, verify, dump and copy a WeaselDB log offline

SYNOPSIS
    weaseldb log stat   [SOURCE] [--json]
    weaseldb log verify [SOURCE] [--json]
    weaseldb log dump   [SOURCE] [--from V] [--to V] [--begin B64] [--end B64]
                        [--request-id ID]
    weaseldb log copy   [SOURCE] --to-dir DIR | --to-s3 s3://BUCKET/PREFIX
                        [--to-config FILE]

SOURCE (the same settings as the server)
    --config FILE      TOML configuration; its [persist] section says where
                       the log is
    --data-dir DIR     the disk log directory (or the fakes3 store)
    --persist BACKEND  disk (default), s3 or fakes3

    A server holding a disk directory is named; stat, verify and dump then
    read the live log, copy refuses. copy holds a shared lock on the
    directory while it reads, so that no server starts on it meanwhile.

Run 'weaseldb log COMMAND --help' for each command.
`

// Main runs `weaseldb log ARGS...` and returns the exit status.
func Main(args []string, stdout, stderr io.Writer, env Env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmds := map[string]func(*invocation) int{"stat": runStat, "verify": runVerify, "dump": runDump, "copy": runCopy}
	run, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "weaseldb log: unknown command %q (want stat, verify, dump or copy; see weaseldb log --help)\n", args[0])
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	inv := &invocation{name: args[0], args: args[1:], stdout: stdout, stderr: stderr, env: env, ctx: ctx}
	return run(inv)
}

// invocation is one command's flags and streams.
type invocation struct {
	name           string
	args           []string
	stdout, stderr io.Writer
	env            Env
	ctx            context.Context

	fs         *flag.FlagSet
	configFile *string
	dataDir    *string
	backend    *string
	jsonOut    *bool
	cfg        config.Config
}

// flags starts the command's flag set with the SOURCE flags.
func (inv *invocation) flags(withJSON bool) *flag.FlagSet {
	fs := flag.NewFlagSet("weaseldb log "+inv.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	inv.configFile = fs.String("config", "", "")
	inv.dataDir = fs.String("data-dir", "", "")
	inv.backend = fs.String("persist", "", "")
	if withJSON {
		inv.jsonOut = fs.Bool("json", false, "")
	}
	inv.fs = fs
	return fs
}

// parse parses the flags and builds the configuration; help is the
// command's --help text. It returns -1 to go on, else an exit status.
func (inv *invocation) parse(help string) int {
	if err := inv.fs.Parse(inv.args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(inv.stdout, help)
			return exitOK
		}
		fmt.Fprintf(inv.stderr, "weaseldb log %s: %v (see weaseldb log %s --help)\n", inv.name, err, inv.name)
		return exitUsage
	}
	if inv.fs.NArg() > 0 {
		fmt.Fprintf(inv.stderr, "weaseldb log %s: unexpected argument %q (see weaseldb log %s --help)\n", inv.name, inv.fs.Arg(0), inv.name)
		return exitUsage
	}
	cfg, err := loadConfig(*inv.configFile, *inv.dataDir, *inv.backend)
	if err != nil {
		fmt.Fprintf(inv.stderr, "weaseldb log %s: %v\n", inv.name, err)
		return exitUsage
	}
	inv.cfg = cfg
	return -1
}

func loadConfig(file, dataDir, backend string) (config.Config, error) {
	cfg := config.Default()
	if file != "" {
		if err := cfg.LoadFile(file); err != nil {
			return cfg, err
		}
	}
	if dataDir != "" {
		cfg.Persist.Dir = dataDir
	}
	if backend != "" {
		cfg.Persist.Backend = backend
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// open opens the configured log as a source.
func (inv *invocation) open(cfg config.Config) (source, error) {
	switch cfg.Persist.Backend {
	case "disk":
		return openDiskSource(cfg.Persist.Dir, inv.name == "copy")
	case "s3", "fakes3":
		if inv.env.OpenS3 == nil {
			return nil, errors.New("S3 backends are not available in this build")
		}
		l, stop, err := inv.env.OpenS3(inv.ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &s3Source{log: l, stop: stop}, nil
	}
	return nil, fmt.Errorf("persist.backend %q: want disk, s3 or fakes3", cfg.Persist.Backend)
}

// load opens the configured log and reads its view; the caller closes the
// source.
func (inv *invocation) load() (source, *view, error) {
	src, err := inv.open(inv.cfg)
	if err != nil {
		return nil, nil, err
	}
	v, err := src.load(inv.ctx)
	if err != nil {
		src.close()
		return nil, nil, err
	}
	return src, v, nil
}

// fail prints a failure and returns exitProblem.
func (inv *invocation) fail(format string, args ...any) int {
	fmt.Fprintf(inv.stderr, "weaseldb log %s: %s\n", inv.name, fmt.Sprintf(format, args...))
	return exitProblem
}

func (inv *invocation) printJSON(v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	inv.stdout.Write(append(b, '\n'))
}

// warnLive tells stderr when a server holds the directory.
func (inv *invocation) warnLive(v *view) {
	if v.lockHolder != "" {
		fmt.Fprintf(inv.stderr, "weaseldb log %s: warning: %s holds %s: reading a live log\n", inv.name, v.lockHolder, v.location)
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
