package logtool

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/weaseldb/weaseldb/persist"
)

const statHelp = `NAME
    weaseldb log stat - what a log holds

SYNOPSIS
    weaseldb log stat [--config FILE] [--data-dir DIR] [--persist BACKEND] [--json]

DESCRIPTION
    Reads the log offline and prints: its files (disk) or objects (S3),
    segments, the versions held (oldest, newest, oldest retained), bytes,
    the leader terms with the first version of each, the retention
    policies, and whether the log still covers the status window ([commit]
    status_window and status_window_versions): request ids older than the
    log live only in the status runs beside it, which cannot be rebuilt
    from the log if lost. Problems and the repairs
    recovery would make are listed too; 'weaseldb log verify' checks every
    transaction.

    --json   one JSON object instead of text

EXIT STATUS
    0 printed (even if problems were found: see verify); 1 the log could
    not be read; 2 bad usage.
`

type fileStat struct {
	Name     string `json:"name"`
	Bytes    int64  `json:"bytes"`
	Segments int    `json:"segments"`
	Dead     int    `json:"tombstoned_segments,omitempty"`
}

type termStat struct {
	LeaderID     string `json:"leader_id"`
	FirstVersion uint64 `json:"first_version"`
	Segments     int    `json:"segments"`
}

type windowStat struct {
	OldestTimestamp string `json:"oldest_timestamp,omitempty"`
	NewestTimestamp string `json:"newest_timestamp,omitempty"`
	Window          string `json:"window"`
	WindowVersions  uint64 `json:"window_versions"`
	// Covered: the log reaches back over the whole status window (so the
	// status runs beside it could be rebuilt from it).
	Covered bool `json:"covered"`
}

type stat struct {
	Location              string            `json:"location"`
	Backend               string            `json:"backend"`
	Server                string            `json:"server,omitempty"`
	Files                 []fileStat        `json:"files,omitempty"`
	Segments              int               `json:"segments"`
	DiscardedSegments     int               `json:"discarded_segments"`
	Bytes                 int64             `json:"bytes"`
	Transactions          uint64            `json:"transactions"`
	OldestVersion         uint64            `json:"oldest_version"`
	NewestVersion         uint64            `json:"newest_version"`
	OldestRetainedVersion uint64            `json:"oldest_retained_version"`
	LeaderTerms           []termStat        `json:"leader_terms"`
	RetentionPolicies     map[string]uint64 `json:"retention_policies"`
	StatusWindow          windowStat        `json:"status_window"`
	Problems              []problem         `json:"problems"`
	Repairs               []problem         `json:"repairs"`
	Notes                 []string          `json:"notes,omitempty"`
}

func runStat(inv *invocation) int {
	inv.flags(true)
	if code := inv.parse(statHelp); code >= 0 {
		return code
	}
	src, v, err := inv.load()
	if err != nil {
		return inv.fail("%v", err)
	}
	defer src.close()
	inv.warnLive(v)
	st, err := buildStat(inv.ctx, src, v, inv.cfg.Commit.StatusWindow.Duration, inv.cfg.Commit.StatusWindowVersions)
	if err != nil {
		return inv.fail("%v", err)
	}
	if *inv.jsonOut {
		inv.printJSON(st)
	} else {
		printStat(inv, st)
	}
	return exitOK
}

func buildStat(ctx context.Context, src source, v *view, window time.Duration, windowVersions uint64) (*stat, error) {
	st := &stat{Location: v.location, Backend: v.backend, Server: v.lockHolder,
		Segments: len(v.run), DiscardedSegments: len(v.discarded),
		Problems: nonNil(v.problems), Repairs: nonNil(v.repairs), Notes: v.notes,
		RetentionPolicies: map[string]uint64{}, LeaderTerms: []termStat{}}
	perFile := map[string]int{}
	for _, s := range v.run {
		st.Bytes += s.bytes
		st.Transactions += uint64(s.count)
		perFile[s.frame.File]++
		if n := len(st.LeaderTerms); n == 0 || st.LeaderTerms[n-1].LeaderID != s.leader {
			st.LeaderTerms = append(st.LeaderTerms, termStat{LeaderID: s.leader, FirstVersion: uint64(s.first)})
		}
		st.LeaderTerms[len(st.LeaderTerms)-1].Segments++
	}
	for _, f := range v.files {
		st.Files = append(st.Files, fileStat{Name: f.Name, Bytes: f.Bytes, Segments: perFile[f.Name], Dead: f.Dead})
	}
	for id, pv := range v.policies {
		st.RetentionPolicies[id] = uint64(pv)
	}
	st.StatusWindow = windowStat{Window: window.String(), WindowVersions: windowVersions}
	if len(v.run) == 0 {
		st.StatusWindow.Covered = true
		return st, nil
	}
	infos := make([]persist.SegmentInfo, len(v.run))
	for i, s := range v.run {
		infos[i] = persist.SegmentInfo{First: s.first, Last: s.last, Bytes: s.bytes}
	}
	st.OldestVersion = uint64(v.run[0].first)
	st.NewestVersion = uint64(v.run[len(v.run)-1].last)
	st.OldestRetainedVersion = uint64(persist.Recovery{Segments: infos}.OldestRetained())
	oldestTS, newestTS, err := runTimestamps(ctx, src, v.run)
	if err != nil {
		return nil, err
	}
	if oldestTS != 0 {
		st.StatusWindow.OldestTimestamp = time.Unix(0, oldestTS).UTC().Format(time.RFC3339Nano)
		st.StatusWindow.NewestTimestamp = time.Unix(0, newestTS).UTC().Format(time.RFC3339Nano)
	}
	// The window is the last `window` or the last windowVersions versions,
	// whichever is less: covered when the log reaches back to either start.
	startVersion := uint64(1)
	if st.NewestVersion > windowVersions {
		startVersion = st.NewestVersion - windowVersions + 1
	}
	st.StatusWindow.Covered = st.OldestRetainedVersion == 0 ||
		st.OldestRetainedVersion+1 <= startVersion ||
		(oldestTS != 0 && oldestTS <= newestTS-window.Nanoseconds())
	return st, nil
}

// runTimestamps returns the commit timestamps of the first and the last
// transaction of the run (0, 0 if it holds none).
func runTimestamps(ctx context.Context, src source, run []segment) (oldest, newest int64, err error) {
	i := slices.IndexFunc(run, func(s segment) bool { return s.count > 0 })
	if i < 0 {
		return 0, 0, nil
	}
	first, err := src.read(ctx, run[i])
	if err != nil {
		return 0, 0, err
	}
	last, err := src.read(ctx, run[len(run)-1])
	if err != nil {
		return 0, 0, err
	}
	_, txns, err := persist.DecodeSegment(first, nil)
	if err != nil || len(txns) == 0 {
		return 0, 0, fmt.Errorf("segment %d at %s: %w", run[i].first, run[i].where, err)
	}
	oldest = txns[0].TimestampUnixNano
	_, txns, err = persist.DecodeSegment(last, txns)
	if err != nil || len(txns) == 0 {
		return 0, 0, fmt.Errorf("segment %d at %s: %w", run[len(run)-1].first, run[len(run)-1].where, err)
	}
	return oldest, txns[len(txns)-1].TimestampUnixNano, nil
}

func nonNil(p []problem) []problem {
	if p == nil {
		return []problem{}
	}
	return p
}

func printStat(inv *invocation, st *stat) {
	w := inv.stdout
	fmt.Fprintf(w, "log             %s (%s)\n", st.Location, st.Backend)
	if st.Server != "" {
		fmt.Fprintf(w, "server          %s holds it (live log)\n", st.Server)
	}
	if len(st.Files) > 0 {
		var total int64
		for _, f := range st.Files {
			total += f.Bytes
		}
		fmt.Fprintf(w, "files           %d, %d bytes\n", len(st.Files), total)
		for _, f := range st.Files {
			dead := ""
			if f.Dead > 0 {
				dead = fmt.Sprintf(", %d tombstoned", f.Dead)
			}
			fmt.Fprintf(w, "  %s  %d bytes, %d segments%s\n", f.Name, f.Bytes, f.Segments, dead)
		}
	}
	fmt.Fprintf(w, "segments        %d (recovery would discard %d more)\n", st.Segments, st.DiscardedSegments)
	fmt.Fprintf(w, "versions        %d..%d, oldest retained %d, %d transactions\n", st.OldestVersion, st.NewestVersion, st.OldestRetainedVersion, st.Transactions)
	fmt.Fprintf(w, "bytes           %d\n", st.Bytes)
	fmt.Fprintf(w, "leader terms    %d\n", len(st.LeaderTerms))
	for _, t := range st.LeaderTerms {
		fmt.Fprintf(w, "  %s  from version %d, %d segments\n", t.LeaderID, t.FirstVersion, t.Segments)
	}
	if len(st.RetentionPolicies) == 0 {
		fmt.Fprintf(w, "retention       no policies\n")
	} else {
		fmt.Fprintf(w, "retention       %d policies\n", len(st.RetentionPolicies))
		for _, id := range slices.Sorted(maps.Keys(st.RetentionPolicies)) {
			fmt.Fprintf(w, "  %s  keeps versions > %d\n", id, st.RetentionPolicies[id])
		}
	}
	sw := st.StatusWindow
	cover := "the log covers it"
	if !sw.Covered {
		cover = "the log does NOT reach back over it: older request ids live only in the status runs beside the log (status/), which cannot be rebuilt from the log"
	}
	fmt.Fprintf(w, "status window   %s or %d versions: %s", sw.Window, sw.WindowVersions, cover)
	if sw.OldestTimestamp != "" {
		fmt.Fprintf(w, " (log spans %s .. %s)", sw.OldestTimestamp, sw.NewestTimestamp)
	}
	fmt.Fprintln(w)
	printFindings(inv, st.Problems, st.Repairs, st.Notes)
}

func printFindings(inv *invocation, problems, repairs []problem, notes []string) {
	w := inv.stdout
	for _, p := range problems {
		fmt.Fprintf(w, "PROBLEM  %s\n", where(p))
	}
	for _, p := range repairs {
		fmt.Fprintf(w, "REPAIR   %s\n", where(p))
	}
	for _, n := range notes {
		fmt.Fprintf(w, "NOTE     %s\n", n)
	}
}

func where(p problem) string {
	if p.Where == "" {
		return indent(p.Problem)
	}
	return p.Where + ": " + indent(p.Problem)
}
