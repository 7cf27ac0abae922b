package logtool

import (
	"fmt"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

const verifyHelp = `NAME
    weaseldb log verify - check a log offline

SYNOPSIS
    weaseldb log verify [--config FILE] [--data-dir DIR] [--persist BACKEND] [--json]

DESCRIPTION
    Reads every frame (disk) or object (S3): framing and checksums, every
    transaction of every segment, contiguity of versions, the order of
    leader terms, the retention policies, and a DAMAGED marker left by a
    server that saw its files deleted or cut. It changes nothing.

    Problems are what recovery would refuse or what loses acknowledged
    commits; the first is named by file and offset (disk) or object key
    (S3). Repairs are what recovery does by itself: cutting an incomplete
    frame at the end of the newest file (a write torn by a crash, which was
    never acknowledged, or a file cut while no server ran, which cannot be
    told apart), and discarding segments after a gap.

    --json   one JSON object: {"ok": …, "problems": […], "repairs": […], …}

EXIT STATUS
    0 no problem (repairs may be listed); 1 a problem was found or the log
    could not be read; 2 bad usage.
`

type verifyResult struct {
	OK           bool      `json:"ok"`
	Location     string    `json:"location"`
	Backend      string    `json:"backend"`
	Server       string    `json:"server,omitempty"`
	Segments     int       `json:"segments"`
	Transactions uint64    `json:"transactions"`
	FirstVersion uint64    `json:"first_version"`
	LastVersion  uint64    `json:"last_version"`
	Problems     []problem `json:"problems"`
	Repairs      []problem `json:"repairs"`
	Notes        []string  `json:"notes,omitempty"`
}

func runVerify(inv *invocation) int {
	inv.flags(true)
	if code := inv.parse(verifyHelp); code >= 0 {
		return code
	}
	src, v, err := inv.load()
	if err != nil {
		return inv.fail("%v", err)
	}
	defer src.close()
	inv.warnLive(v)
	res := verifyRun(inv, src, v)
	if *inv.jsonOut {
		inv.printJSON(res)
	} else {
		w := inv.stdout
		fmt.Fprintf(w, "verify %s (%s): %d segments, versions %d..%d, %d transactions\n",
			res.Location, res.Backend, res.Segments, res.FirstVersion, res.LastVersion, res.Transactions)
		printFindings(inv, res.Problems, res.Repairs, res.Notes)
		if res.OK {
			fmt.Fprintln(w, "OK")
		} else {
			fmt.Fprintf(w, "FAILED: %d problem(s); the first: %s\n", len(res.Problems), where(res.Problems[0]))
		}
	}
	if !res.OK {
		return exitProblem
	}
	return exitOK
}

// verifyRun decodes every transaction of the run and checks the policies.
func verifyRun(inv *invocation, src source, v *view) verifyResult {
	res := verifyResult{Location: v.location, Backend: v.backend, Server: v.lockHolder,
		Segments: len(v.run), Problems: nonNil(v.problems), Repairs: nonNil(v.repairs), Notes: v.notes}
	var r persist.SegmentReader
	for i, s := range v.run {
		if err := inv.ctx.Err(); err != nil {
			res.Problems = append(res.Problems, problem{Problem: "interrupted: " + err.Error()})
			break
		}
		data, err := src.read(inv.ctx, s)
		if err != nil {
			res.Problems = append(res.Problems, problem{Where: s.where, Problem: err.Error()})
			continue
		}
		if _, err := r.Reset(data); err != nil {
			res.Problems = append(res.Problems, problem{Where: s.where, Problem: err.Error()})
			continue
		}
		n := uint32(0)
		next := s.first
		for t, ok := r.Next(); ok; t, ok = r.Next() {
			if t.Version != next {
				res.Problems = append(res.Problems, problem{Where: s.where, Problem: fmt.Sprintf("transaction %d where %d was due", t.Version, next)})
				break
			}
			next++
			n++
		}
		if err := r.Err(); err != nil {
			res.Problems = append(res.Problems, problem{Where: s.where, Problem: fmt.Sprintf("segment %d..%d: transaction %d does not decode: %v", s.first, s.last, next, err)})
			continue
		}
		if n != s.count {
			res.Problems = append(res.Problems, problem{Where: s.where, Problem: fmt.Sprintf("segment %d..%d holds %d transactions, its header says %d", s.first, s.last, n, s.count)})
		}
		if i > 0 && s.first != v.run[i-1].last+1 {
			res.Problems = append(res.Problems, problem{Where: s.where, Problem: fmt.Sprintf("segment %d follows %d: not contiguous", s.first, v.run[i-1].last)})
		}
		res.Transactions += uint64(n)
	}
	if len(v.run) > 0 {
		res.FirstVersion, res.LastVersion = uint64(v.run[0].first), uint64(v.run[len(v.run)-1].last)
	}
	for id, pv := range v.policies {
		if pv > tx.Version(res.LastVersion) {
			res.Problems = append(res.Problems, problem{Where: "retention policy " + id,
				Problem: fmt.Sprintf("keeps versions > %d, beyond the newest version %d in the log: the log lost versions someone read", pv, res.LastVersion)})
		}
	}
	res.OK = len(res.Problems) == 0
	return res
}
