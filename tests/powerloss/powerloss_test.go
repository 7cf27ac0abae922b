// Package powerloss is the power-loss suite: it runs the real weaseldb
// binary on a lazyfs mount (internal/lazyfs), a FUSE file system that
// forgets whatever was not fsynced, and cuts the power at random moments:
// the file system freezes, the processes die, and only durable state — plus
// one legal choice of what was pending (lost, a prefix kept, the last write
// torn, each directory change kept or lost) — survives. SIGKILL cannot show
// a missing fdatasync or directory fsync; this can.
//
// Under load (committers on 16 connections with request ids, some with
// preconditions; retention truncation running; subscribers reading), each
// cut is followed by a restart on the surviving state and a check that
// every acknowledged commit (and every commit a durable subscription
// delivered) is present exactly once at its version, that versions chain
// with no gap, that /v1/status agrees with the log, that request-id retries
// never commit twice, and that the last acknowledged retention policy
// survived. Recovery must accept every such state: a torn tail is cut, not
// refused.
//
// Backends: disk; --persist fakes3 (its store on the mount); `weaseldb
// fakes3 --dir` on the mount behind --persist s3.
//
// Run:
//
//	go test ./tests/powerloss/ -v                                 # 20 cuts per backend
//	WEASELDB_POWERLOSS_CUTS=1000 go test ./tests/powerloss/ -v -timeout 10h   # make crash-power
//	WEASELDB_POWERLOSS_SEED=1234 ...                              # replay a seed
//
// A failure prints the seed and the command that replays it (the cut
// choices replay exactly; the moment of each cut is wall-clock, so a replay
// may interleave differently). Where FUSE cannot mount, the suite skips.
package powerloss

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// config batches often and truncates often, so that cuts land in the middle
// of segment writes, file rolls and truncation; small log files so that
// files are created and removed (directory fsyncs) many times per run.
const config = `
[commit]
batch_interval = "1ms"
max_in_flight = 4

[retention]
truncate_interval = "10ms"
`

const (
	committers  = 16
	subscribers = 2
	policyID    = "powerloss"
)

func cuts(t *testing.T) int {
	if s := os.Getenv("WEASELDB_POWERLOSS_CUTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WEASELDB_POWERLOSS_CUTS=%q: want a positive integer", s)
		}
		return n
	}
	if testing.Short() {
		return 3
	}
	return 20
}

func seed(t *testing.T) uint64 {
	if s := os.Getenv("WEASELDB_POWERLOSS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEASELDB_POWERLOSS_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// mountOrSkip mounts a lazyfs for one test, or skips saying why.
func mountOrSkip(t *testing.T) *lazyfs.FS {
	t.Helper()
	if err := lazyfs.CanMount(); err != nil {
		t.Skipf("power-loss suite skipped: FUSE cannot mount here: %v", err)
	}
	dir := t.TempDir()
	fsys, err := lazyfs.Mount(filepath.Join(dir, "store"), filepath.Join(dir, "mnt"))
	if err != nil {
		t.Skipf("power-loss suite skipped: FUSE cannot mount here: %v", err)
	}
	t.Cleanup(func() { fsys.Close() }) // lazy unmount, connection abort: never hangs
	return fsys
}

var backends = []string{"disk", "fakes3", "s3"}

func TestPowerLoss(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			res := Run(t, Options{Bin: bin, Backend: b, Cuts: cuts(t), Seed: seed(t), Faults: true})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
		})
	}
}

// Totals are a run's figures.
type Totals struct {
	Cuts, Acked, Checked, Observed, Refused, Lost, LostCommitted, Retried int
	StatusChecked, PolicyChecked, FaultsHit                               int
	Report                                                                lazyfs.CutReport // summed outcome counts
	StrictCuts                                                            int
	CutsAtOp                                                              int // armed to cut at an I/O operation
}

func (s Totals) String() string {
	r := s.Report
	return fmt.Sprintf("%d cuts (%d strict, %d armed at an I/O op), %d faults hit (I/O errors and cuts at an op), %d acked, %d acknowledged commits checked, %d seen by subscribers, %d refused (409), %d lost answers resolved (%d had committed), %d retried, %d status answers checked, %d policies checked; files: %d all-lost %d prefix %d all-kept %d torn (%d zero-filled); pending writes kept %d lost %d (+%d doomed); dir ops kept %d lost %d; %d files vanished",
		s.Cuts, s.StrictCuts, s.CutsAtOp, s.FaultsHit, s.Acked, s.Checked, s.Observed, s.Refused, s.Lost, s.LostCommitted, s.Retried, s.StatusChecked, s.PolicyChecked,
		r.FilesAllLost, r.FilesPrefix, r.FilesAllKept, r.FilesTorn, r.TornZeroTail, r.PendingWritesKept, r.PendingWritesLost, r.DoomedWritesLost, r.DirOpsKept, r.DirOpsLost, r.FilesVanished)
}

func (s *Totals) add(r lazyfs.CutReport) {
	s.Cuts++
	if r.Strict {
		s.StrictCuts++
	}
	a := &s.Report
	a.FilesAllLost += r.FilesAllLost
	a.FilesPrefix += r.FilesPrefix
	a.FilesAllKept += r.FilesAllKept
	a.FilesTorn += r.FilesTorn
	a.TornZeroTail += r.TornZeroTail
	a.PendingWritesKept += r.PendingWritesKept
	a.PendingWritesLost += r.PendingWritesLost
	a.DoomedWritesLost += r.DoomedWritesLost
	a.DirOpsKept += r.DirOpsKept
	a.DirOpsLost += r.DirOpsLost
	a.FilesVanished += r.FilesVanished
	a.DirsVanished += r.DirsVanished
}

// Result is what Run found: its figures, and the first failure (nil if none).
type Result struct {
	Totals
	Err error
}

// replay is the one command that replays a run.
func replay(run string, seed uint64, n int) string {
	return fmt.Sprintf("WEASELDB_POWERLOSS_SEED=%d WEASELDB_POWERLOSS_CUTS=%d go test -count=1 -v -run '%s' ./tests/powerloss/", seed, n, run)
}

// runPattern is the -run pattern selecting test t alone.
func runPattern(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// Options say what Run runs.
type Options struct {
	Bin     string   // the weaseldb binary
	Backend string   // disk, fakes3 or s3
	Cuts    int      // how many power cuts
	Seed    uint64   // the seed every choice comes from
	Env     []string // extra environment of the server (KEY=VALUE)
	// Faults: in about one cut in three, fail a few fsyncs or writes (EIO,
	// ENOSPC) at a random moment before it.
	Faults bool
	// Fault, if set, is injected before every cut, at a random moment.
	Fault *lazyfs.Fault
}

// Run runs o.Cuts power cuts against one backend and returns the figures
// and the first failure, which names the seed and the command replaying it.
func Run(t *testing.T, o Options) Result {
	fsys := mountOrSkip(t)
	backend, n, seed := o.Backend, o.Cuts, o.Seed
	t.Logf("power-loss %s: seed=%d cuts=%d (replay: %s)", backend, seed, n, replay(runPattern(t), seed, n))
	r := &rig{t: t, bin: o.Bin, backend: backend, env: o.Env, faults: o.Faults, fault: o.Fault, fsys: fsys, led: harness.NewLedger()}
	r.led.MaxRetries = 40
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var res Result
	fail := func(i int, err error) Result {
		res.Err = fmt.Errorf("power-loss %s, cut %d/%d, seed %d: %w\nreplay: %s", backend, i, n, seed, err, replay(runPattern(t), seed, n))
		return res
	}
	if err := r.prepare(); err != nil {
		return fail(0, err)
	}
	defer r.stop()
	if err := r.start(); err != nil {
		return fail(0, err)
	}
	for i := 1; i <= n; i++ {
		if err := r.iteration(rng.Uint64(), &res.Totals); err != nil {
			return fail(i, err)
		}
		if i%10 == 0 || i == n {
			t.Logf("power-loss %s after %d cuts: %s", backend, i, res.Totals)
		}
	}
	return res
}

// rig is one backend's processes on one mount.
type rig struct {
	t       *testing.T
	bin     string
	backend string
	env     []string
	faults  bool
	fault   *lazyfs.Fault
	fsys    *lazyfs.FS
	led     *harness.Ledger

	srv  *harness.Server
	fake *fakeProc // the s3 backend's `weaseldb fakes3`
	hc   *http.Client

	verified uint64 // every version <= verified was checked after an earlier cut
	policy   policyState
}

// policyState is what the retention mover knows of its policy.
type policyState struct {
	mu       sync.Mutex
	acked    uint64   // the last acknowledged PUT (0: none, or deleted)
	inFlight []uint64 // PUTs sent since, not acknowledged (lost answers, 5xx)
}

func (r *rig) dataDir() string { return filepath.Join(r.fsys.Mountpoint(), "data") }
func (r *rig) s3Dir() string   { return filepath.Join(r.fsys.Mountpoint(), "s3") }

// prepare leaves the mount empty: the server creates --data-dir (and the
// fake S3 its --dir) itself, which must be durable too.
func (r *rig) prepare() error { return nil }

func (r *rig) start() error {
	opts := harness.Options{Bin: r.bin, DataDir: r.dataDir(), Config: config, Env: r.env}
	switch r.backend {
	case "fakes3":
		opts.Persist = "fakes3"
	case "s3":
		fake, err := startFake(r.bin, r.s3Dir())
		if err != nil {
			return fmt.Errorf("start weaseldb fakes3 --dir on the mount: %w", err)
		}
		r.fake = fake
		opts.Config = config + s3Config(fake.url)
	}
	srv, err := harness.Start(opts)
	if err != nil {
		if r.fake != nil {
			return fmt.Errorf("restart on the surviving state: %w\nfakes3 log:\n%s", err, tail(r.fake.log(), 3000))
		}
		return fmt.Errorf("restart on the surviving state: %w", err)
	}
	r.srv = srv
	r.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: committers * 2, DisableCompression: true}}
	return nil
}

func s3Config(endpoint string) string {
	return fmt.Sprintf(`
[persist]
backend = "s3"
bucket = "weaseldb"
prefix = "powerloss"
endpoint = %q
use_path_style = true
access_key_id = "test"
secret_access_key = "test"
request_timeout = "10s"
max_attempts = 3
# A restart after a cut finds the lease of the process that died and takes
# over once it has not changed for lease_timeout (issue 14): keep it short.
lease_timeout = "1s"
lease_renew_interval = "200ms"
replica_poll_interval = "50ms"
`, endpoint)
}

// stop ends everything still running (graceful first, bounded).
func (r *rig) stop() {
	if r.srv != nil {
		r.srv.Stop(20 * time.Second)
		r.srv = nil
	}
	if r.fake != nil {
		r.fake.stop()
		r.fake = nil
	}
	if r.hc != nil {
		r.hc.CloseIdleConnections()
	}
}

// kill is the power going: the file system freezes first (nothing after
// this instant becomes durable), then every process dies.
func (r *rig) kill() {
	r.fsys.Freeze()
	if r.srv != nil {
		r.srv.Kill()
		r.srv = nil
	}
	if r.fake != nil {
		r.fake.kill()
		r.fake = nil
	}
	if r.hc != nil {
		r.hc.CloseIdleConnections()
	}
}

// iteration runs load on the running server, cuts the power, restarts on
// what survived and verifies it. The server is left running for the next.
func (r *rig) iteration(seed uint64, tot *Totals) error {
	rng := rand.New(rand.NewPCG(seed, 11))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked, refused atomic.Int64
	errs := make(chan error, committers+subscribers+1)
	url := r.srv.URL
	for w := 0; w < committers; w++ {
		wg.Add(1)
		go func(w int, s uint64) {
			defer wg.Done()
			if err := commitLoop(ctx, r.hc, url, r.led, w, rand.New(rand.NewPCG(s, uint64(w))), &acked, &refused); err != nil {
				errs <- err
			}
		}(w, rng.Uint64())
	}
	var observed atomic.Int64
	for s := 0; s < subscribers; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := subscribeLoop(ctx, r.hc, url, r.verified, r.led, &observed); err != nil {
				errs <- err
			}
		}()
	}
	delay := cutDelay(rng)
	if r.verified > 2 {
		wg.Add(1)
		go func(s uint64) {
			defer wg.Done()
			r.moveRetention(ctx, url, rand.New(rand.NewPCG(s, 3)), delay)
		}(rng.Uint64())
	}
	if r.fault != nil || (r.faults && rng.IntN(3) == 0) {
		f := r.randomFault(rng)
		if r.fault != nil {
			f = *r.fault
		}
		wg.Add(1)
		go func(f lazyfs.Fault, at time.Duration) {
			defer wg.Done()
			select {
			case <-time.After(at):
				r.fsys.InjectFault(f)
			case <-ctx.Done():
			}
		}(f, time.Duration(rng.Int64N(int64(delay)+1)))
	}
	if rng.IntN(3) == 0 {
		// Cut the power at an I/O operation rather than at a wall-clock
		// moment: at a write, an fsync (its file's writes still pending),
		// a removal, a directory fsync (its changes pending); if none
		// comes before the deadline, the cut happens then.
		ops := []lazyfs.FaultOp{lazyfs.FaultWrite, lazyfs.FaultFsync, lazyfs.FaultUnlink, lazyfs.FaultDirFsync}
		r.fsys.InjectFault(lazyfs.Fault{Op: ops[rng.IntN(len(ops))], Skip: rng.IntN(60), Count: 1, Freeze: true})
		tot.CutsAtOp++
	}
	hitsBefore := r.fsys.Stats().FaultsHit
	time.Sleep(delay)
	r.kill()
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	r.fsys.ClearFaults()
	tot.FaultsHit += int(r.fsys.Stats().FaultsHit - hitsBefore)
	rep, err := r.fsys.Cut(rng.Uint64())
	if err != nil {
		return err
	}
	tot.add(rep)
	tot.Acked += int(acked.Load())
	tot.Refused += int(refused.Load())
	tot.Observed += int(observed.Load())
	if err := r.start(); err != nil {
		return fmt.Errorf("after cut (%s): %w", rep, err)
	}
	check, err := r.verify(rng)
	if err != nil {
		return fmt.Errorf("after cut (%s): %w\nserver log after restart:\n%s", rep, err, tail(r.srv.Log(), 4000))
	}
	tot.Checked += check.Checked
	tot.Lost += check.Lost
	tot.LostCommitted += check.LostCommitted
	tot.Retried += check.Retried
	tot.StatusChecked += check.statusChecked
	tot.PolicyChecked++
	r.verified = check.Recovered
	r.led.Forget(check.Oldest)
	return nil
}

type verified struct {
	harness.Check
	statusChecked int
}

func (r *rig) verify(rng *rand.Rand) (verified, error) {
	var v verified
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The last acknowledged retention policy survived (or one in flight
	// at the cut replaced it); then drop it, so that truncation cannot race
	// the log read below (the next iteration sets it again).
	if err := r.checkPolicy(ctx); err != nil {
		return v, err
	}
	code, err := harness.Do(ctx, r.hc, "DELETE", r.srv.URL+"/v1/retention/"+policyID, nil, nil)
	if err != nil || (code != 204 && code != 404) {
		return v, fmt.Errorf("DELETE /v1/retention/%s: HTTP %d %v", policyID, code, err)
	}
	r.policy.mu.Lock()
	r.policy.acked, r.policy.inFlight = 0, nil
	r.policy.mu.Unlock()
	v.Check, err = r.led.Verify(ctx, r.hc, r.srv.URL, rng)
	if err != nil {
		return v, err
	}
	// /v1/status answers match the log for a sample of acknowledged commits.
	n, err := r.led.CheckStatus(ctx, r.hc, r.srv.URL, v.Oldest, rng, 40)
	v.statusChecked = n
	return v, err
}

func (r *rig) checkPolicy(ctx context.Context) error {
	r.policy.mu.Lock()
	acked, inFlight := r.policy.acked, r.policy.inFlight
	r.policy.mu.Unlock()
	ret, err := harness.ListRetention(ctx, r.hc, r.srv.URL)
	if err != nil {
		return err
	}
	var got uint64
	found := false
	for _, p := range ret.Policies {
		if p.PolicyID == policyID {
			got, found = p.Version, true
		}
	}
	switch {
	case found && (got == acked || slices.Contains(inFlight, got)):
	case !found && acked == 0:
	default:
		return fmt.Errorf("LOST POLICY: retention policy %s after the cut: present %v at %d; last acknowledged PUT %d, in flight %v", policyID, found, got, acked, inFlight)
	}
	return nil
}

// moveRetention PUTs the policy forward a few times before the cut, to
// between half and all of what earlier cuts verified, so truncation runs
// near the cut (and the log a Verify reads stays short).
func (r *rig) moveRetention(ctx context.Context, url string, rng *rand.Rand, within time.Duration) {
	for k := 0; k < 3; k++ {
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(within)/3 + 1))):
		case <-ctx.Done():
			return
		}
		v := r.verified/2 + 1 + rng.Uint64N(r.verified/2) // <= verified: checked already
		r.policy.mu.Lock()
		if v <= r.policy.acked {
			r.policy.mu.Unlock()
			continue
		}
		r.policy.inFlight = append(r.policy.inFlight, v)
		r.policy.mu.Unlock()
		code, err := harness.PutRetention(ctx, r.hc, url, policyID, v)
		r.policy.mu.Lock()
		if err == nil && (code == 200 || code == 201 || code == 204) {
			r.policy.acked, r.policy.inFlight = v, nil
		}
		// Otherwise the answer was lost or an error: it stays in flight
		// (it may or may not have been stored).
		r.policy.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// randomFault picks an I/O fault for one of the files the backend syncs:
// fsync/fdatasync or write failing with EIO or ENOSPC, once to three times.
func (r *rig) randomFault(rng *rand.Rand) lazyfs.Fault {
	names := []string{".tmp-"} // fake S3 objects are written to .tmp-*, synced, renamed
	if r.backend == "disk" {
		names = []string{".log", ".log", "retention.json"}
	}
	f := lazyfs.Fault{Op: lazyfs.FaultFsync, Name: names[rng.IntN(len(names))], Errno: syscall.EIO, Count: 1 + rng.IntN(3)}
	if rng.IntN(2) == 0 {
		f.Op = lazyfs.FaultWrite
	}
	if rng.IntN(2) == 0 {
		f.Errno = syscall.ENOSPC
	}
	return f
}

// cutDelay varies the moment of the cut: right at startup, early in the
// load, and deep into it.
func cutDelay(rng *rand.Rand) time.Duration {
	switch rng.IntN(3) {
	case 0:
		return time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
	case 1:
		return 40*time.Millisecond + time.Duration(rng.Int64N(int64(260*time.Millisecond)))
	default:
		return 300*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))
	}
}

var b64 = base64.StdEncoding

func sharedKey(rng *rand.Rand) string {
	return b64.EncodeToString(fmt.Appendf(nil, "shared/%d", rng.IntN(4)))
}

func key(w, k int) string { return b64.EncodeToString(fmt.Appendf(nil, "k/%02d/%03d", w, k)) }

// randomOps returns 1-4 operations on the committer's own keys; now and then
// a large value, so that log files fill and roll.
func randomOps(rng *rand.Rand, w int) []harness.Op {
	n := 1 + rng.IntN(4)
	ops := make([]harness.Op, 0, n)
	for range n {
		switch r := rng.IntN(20); {
		case r == 0:
			ops = append(ops, harness.Op{Type: "range_delete",
				Begin: b64.EncodeToString(fmt.Appendf(nil, "k/%02d/1", w)),
				End:   b64.EncodeToString(fmt.Appendf(nil, "k/%02d/2", w))})
		case r < 3:
			ops = append(ops, harness.Op{Type: "delete", Key: key(w, rng.IntN(200))})
		default:
			size := 1 + rng.IntN(200)
			if rng.IntN(40) == 0 {
				size = 32 << 10
			}
			v := make([]byte, size)
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			ops = append(ops, harness.Op{Type: "write", Key: key(w, rng.IntN(200)), Value: b64.EncodeToString(v)})
		}
	}
	return ops
}

// commitLoop commits until ctx ends. One commit in four carries a
// precondition on one of the committer's own keys at the version of its
// last acknowledged commit: it commits unless a commit whose answer was
// lost wrote that key meanwhile; a 409 is a definite "not committed".
func commitLoop(ctx context.Context, hc *http.Client, url string, led *harness.Ledger, w int, rng *rand.Rand, acked, refused *atomic.Int64) error {
	var last uint64
	for ctx.Err() == nil {
		rid := fmt.Sprintf("pl-%02d-%016x%016x", w, rng.Uint64(), rng.Uint64())
		req := harness.CommitRequest{RequestID: rid, Operations: randomOps(rng, w)}
		withPre := last > 0 && rng.IntN(4) == 0
		if withPre {
			// Read one of a few keys every committer writes now and then:
			// some of these conflict (409), and must then never appear.
			req.Preconditions = []harness.Precondition{{Type: "point_read", Key: sharedKey(rng), Version: last}}
		}
		if rng.IntN(8) == 0 {
			req.Operations = append(req.Operations, harness.Op{Type: "write", Key: sharedKey(rng), Value: b64.EncodeToString([]byte(rid))})
		}
		led.Sent(rid, req.Operations)
		status, ans, err := harness.Commit(ctx, hc, url, req)
		switch {
		case err != nil || status == 503 || status == 500:
			// Lost answer (the cut) or not persisted: unknown, resolved
			// after the restart.
			if status >= 500 {
				time.Sleep(10 * time.Millisecond)
			}
		case status == 200 && ans.Status == "committed" && !ans.Duplicate && ans.RequestID == rid && ans.Version > 0:
			led.Acked(rid, ans.Version)
			acked.Add(1)
			last = ans.Version
		case status == 409 && withPre && ans.Status == "not_committed" && (ans.Reason == "conflict" || ans.Reason == "too_old"):
			led.NotCommitted(rid)
			refused.Add(1)
			last = ans.Version
		default:
			return fmt.Errorf("unexpected answer to fresh commit %s (preconditions %v): HTTP %d %+v", rid, withPre, status, ans)
		}
	}
	return nil
}

// subscribeLoop follows the durable stream: versions must chain, and every
// transaction it delivers is recorded in the ledger as acknowledged (a
// durable subscription may only show what will survive).
func subscribeLoop(ctx context.Context, hc *http.Client, url string, after uint64, led *harness.Ledger, observed *atomic.Int64) error {
	s, err := harness.Subscribe(ctx, hc, url, after)
	if err != nil {
		return nil // the server went before the subscription started
	}
	defer s.Close()
	prev := uint64(0)
	for {
		t, err := s.NextTxn()
		if err != nil {
			return nil // the cut (or truncation under the reader)
		}
		if prev != 0 && t.PrevVersion != prev {
			return fmt.Errorf("subscriber: version %d has prev %d, the one before was %d", t.Version, t.PrevVersion, prev)
		}
		prev = t.Version
		if harness.IsClaim(t) {
			continue // a new leader's claim
		}
		if err := led.Observed(t.RequestID, t.Version); err != nil {
			return err
		}
		observed.Add(1)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// fakeProc is a `weaseldb fakes3 --dir` process.
type fakeProc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

func (f *fakeProc) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs.String()
}

func startFake(bin, dir string) (*fakeProc, error) {
	cmd := exec.Command(bin, "fakes3", "--listen", "127.0.0.1:0", "--dir", dir, "--buckets", "weaseldb")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	f := &fakeProc{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{f}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "fakes3 listening on "); ok {
				select {
				case ready <- u:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); close(f.done) }()
	select {
	case f.url = <-ready:
		return f, nil
	case <-f.done:
		return nil, fmt.Errorf("fakes3 exited before it was ready: %s", f.log())
	case <-time.After(30 * time.Second):
		f.kill()
		return nil, errors.New("fakes3 not ready after 30s")
	}
}

type lockedWriter struct{ f *fakeProc }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.f.logs.Write(p)
}

func (f *fakeProc) kill() {
	f.cmd.Process.Kill()
	<-f.done
}

func (f *fakeProc) stop() {
	f.cmd.Process.Signal(os.Interrupt)
	select {
	case <-f.done:
	case <-time.After(20 * time.Second):
		f.kill()
	}
}
