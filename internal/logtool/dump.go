package logtool

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"

	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

const dumpHelp = `NAME
    weaseldb log dump - transactions as JSON lines

SYNOPSIS
    weaseldb log dump [--config FILE] [--data-dir DIR] [--persist BACKEND]
                      [--from V] [--to V] [--begin B64] [--end B64]
                      [--request-id ID]

DESCRIPTION
    Prints the transactions of the log that recovery would keep, in version
    order, one JSON object per line, each exactly the data of a
    /v1/subscribe "transaction" event:

      {"version":43,"prev_version":42,"request_id":"…","timestamp":"…",
       "leader_id":"…","operations":[{"type":"write","key":"…","value":"…"}]}

    prev_version is the version of the previous line (or --from minus one
    for the first), as on a stream, so gaps left by the filters show.

    --from V         first version to print (default: the oldest retained)
    --to V           last version to print (default: the newest)
    --begin B64      only operations on keys >= this (base64), as
                     /v1/subscribe's begin; range deletes are clipped
    --end B64        only operations on keys < this (base64)
    --request-id ID  only the transaction with this request id

EXIT STATUS
    0 printed; 1 the log could not be read or has a problem (what could be
    read was printed); 2 bad usage.
`

func runDump(inv *invocation) int {
	fs := inv.flags(false)
	fromFlag := fs.String("from", "", "")
	toFlag := fs.String("to", "", "")
	beginFlag := fs.String("begin", "", "")
	endFlag := fs.String("end", "", "")
	requestID := fs.String("request-id", "", "")
	if code := inv.parse(dumpHelp); code >= 0 {
		return code
	}
	from, err := parseVersion("--from", *fromFlag, 0)
	if err != nil {
		return usageError(inv, err)
	}
	to, err := parseVersion("--to", *toFlag, math.MaxUint64)
	if err != nil {
		return usageError(inv, err)
	}
	begin, err := base64.StdEncoding.DecodeString(*beginFlag)
	if err != nil {
		return usageError(inv, fmt.Errorf("--begin: not base64: %w", err))
	}
	var end []byte
	if *endFlag != "" {
		if end, err = base64.StdEncoding.DecodeString(*endFlag); err != nil {
			return usageError(inv, fmt.Errorf("--end: not base64: %w", err))
		}
	}
	filter := *beginFlag != "" || *endFlag != ""

	src, v, err := inv.load()
	if err != nil {
		return inv.fail("%v", err)
	}
	defer src.close()
	inv.warnLive(v)
	for _, p := range v.problems {
		fmt.Fprintf(inv.stderr, "weaseldb log dump: PROBLEM %s (dumping what recovery would keep before it)\n", where(p))
	}
	if len(v.run) > 0 {
		oldest := v.run[0].first
		if oldest > 0 && from < oldest {
			if *fromFlag != "" {
				return inv.fail("--from %d: truncated away (the log starts at version %d)", from, oldest)
			}
			from = oldest
		}
	}
	prev := tx.Version(0)
	if from > 0 {
		prev = from - 1
	}
	out := bufio.NewWriterSize(inv.stdout, 1<<16)
	defer out.Flush()
	var r persist.SegmentReader
	var line []byte
	var ops []tx.Operation
	for _, s := range v.run {
		if s.last < from || s.count == 0 {
			continue
		}
		if s.first > to {
			break
		}
		data, err := src.read(inv.ctx, s)
		if err != nil {
			out.Flush()
			return inv.fail("%s: %v", s.where, err)
		}
		h, err := r.Reset(data)
		if err != nil {
			out.Flush()
			return inv.fail("%s: %v", s.where, err)
		}
		for t, ok := r.Next(); ok; t, ok = r.Next() {
			if t.Version < from || t.Version > to {
				continue
			}
			if *requestID != "" && string(t.RequestID) != *requestID {
				continue
			}
			if filter {
				ops = tx.ClipOperations(ops[:0], t.Operations, begin, end)
				if len(ops) == 0 {
					continue
				}
				clipped := *t
				clipped.Operations = ops
				t = &clipped
			}
			line = jsonstream.AppendTransactionEvent(line[:0], t, prev, h.LeaderID)
			line = append(line, '\n')
			if _, err := out.Write(line); err != nil {
				return inv.fail("write: %v", err)
			}
			prev = t.Version
		}
		if err := r.Err(); err != nil {
			out.Flush()
			return inv.fail("%s: %v", s.where, err)
		}
	}
	if err := out.Flush(); err != nil {
		return inv.fail("write: %v", err)
	}
	if len(v.problems) > 0 {
		return exitProblem
	}
	return exitOK
}

func parseVersion(flag, s string, def uint64) (tx.Version, error) {
	if s == "" {
		return tx.Version(def), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want an unsigned decimal version", flag, s)
	}
	return tx.Version(n), nil
}

func usageError(inv *invocation, err error) int {
	fmt.Fprintf(inv.stderr, "weaseldb log %s: %v (see weaseldb log %s --help)\n", inv.name, err, inv.name)
	return exitUsage
}
