// Package failover runs a server's role on a log shared through S3: leader
// or replica, and the moves between them (API.md, "Replicas and failover").
//
// The leader renews a lease object beside the log (s3log.Lease) every
// RenewInterval; replicas follow the log and watch the lease, and one takes
// over when the lease has not changed for LeaseTimeout by its own clock. The
// lease only decides when a replica tries: what keeps two leaders apart is
// the conditional write of the next segment (engine.Promote claims the log
// with it, and a leader whose segment write is refused is deposed).
//
// A leader that loses the log — its segment write refused, a later term's
// lease, or renewals failing for LeaseTimeout — stops acknowledging at once
// and becomes a replica; it does not exit.
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/s3log"
)

// Config configures a Node.
type Config struct {
	Engine        engine.Config
	AdvertiseURL  string        // this server's URL, written in its lease
	LeaseTimeout  time.Duration // unchanged this long: a replica takes over
	RenewInterval time.Duration // how often the leader renews
	PollInterval  time.Duration // how often a replica reads new segments and the lease
	// TakeOver claims the log at start even while another server holds a
	// live lease (a planned switchover): that leader is deposed at its
	// next write or renewal and becomes a replica. Losing the claim to
	// another server is then an error (ErrTakeOverLost), not a replica.
	TakeOver bool
	Logger   *slog.Logger
	// OnEngine is called with each new engine (the API serves it) and
	// OnLeader with the leader's URL and term id as the node learns them
	// ("" when none is known).
	OnEngine func(*engine.Engine)
	OnLeader func(url, leaderID string)
}

// Role is a server's place among the servers sharing a log.
type Role int32

const (
	RoleStarting Role = iota
	RoleLeader
	RoleReplica
)

func (r Role) String() string {
	switch r {
	case RoleLeader:
		return "leader"
	case RoleReplica:
		return "replica"
	}
	return "starting"
}

// Node owns the engine of a server on a shared log and changes its role.
type Node struct {
	cfg Config
	log *s3log.Log

	role      atomic.Int32
	takeovers atomic.Uint64
	stepDowns atomic.Uint64

	mu struct {
		sync.Mutex
		eng         *engine.Engine
		leaderID    string    // the leader the lease names (or this server's term)
		leaseSeenAt time.Time // replica: when the lease last changed, by our clock
		renewedAt   time.Time // leader: start of the last successful renewal
		lagVersions uint64
		caughtUpAt  time.Time // replica: when Follow last found nothing new
	}

	// Replica watch state and leader lease state, owned by Run's goroutine.
	lease     s3log.Lease
	leaseETag string
	leaseSeen bool
}

// New returns a Node over log; Run starts it.
func New(cfg Config, log *s3log.Log) *Node {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnEngine == nil {
		cfg.OnEngine = func(*engine.Engine) {}
	}
	if cfg.OnLeader == nil {
		cfg.OnLeader = func(string, string) {}
	}
	return &Node{cfg: cfg, log: log}
}

// Status is a snapshot for metrics.
type Status struct {
	Role        Role
	LeaderID    string
	LeaseAge    time.Duration // leader: since the last renewal; replica: since the lease last changed
	LagVersions uint64        // replica: versions it was behind at its last poll
	LagSeconds  float64       // replica: since Follow last found nothing new
	Takeovers   uint64
	StepDowns   uint64
}

// Status returns the node's state.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{Role: Role(n.role.Load()), LeaderID: n.mu.leaderID, Takeovers: n.takeovers.Load(), StepDowns: n.stepDowns.Load()}
	switch st.Role {
	case RoleLeader:
		if !n.mu.renewedAt.IsZero() {
			st.LeaseAge = time.Since(n.mu.renewedAt)
		}
	case RoleReplica:
		if !n.mu.leaseSeenAt.IsZero() {
			st.LeaseAge = time.Since(n.mu.leaseSeenAt)
		}
		st.LagVersions = n.mu.lagVersions
		if !n.mu.caughtUpAt.IsZero() {
			st.LagSeconds = time.Since(n.mu.caughtUpAt).Seconds()
		}
	}
	return st
}

// Engine returns the current engine (nil before Run has one).
func (n *Node) Engine() *engine.Engine {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.eng
}

func (n *Node) setEngine(e *engine.Engine) {
	n.mu.Lock()
	n.mu.eng = e
	n.mu.Unlock()
	n.cfg.OnEngine(e)
}

// Start finds the server's first role: leader if no lease exists and its
// claim wins, else replica. It returns once an engine serves (or ctx ends
// or a permanent error occurs); Run continues from there.
func (n *Node) Start(ctx context.Context) error {
	pause := 200 * time.Millisecond
	for {
		err := n.start(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, persist.ErrCorruption) || errors.Is(err, persist.ErrDamaged) || errors.Is(err, ErrTakeOverLost) || ctx.Err() != nil {
			return err
		}
		n.cfg.Logger.Warn("failover: start failed; retrying", "pause", pause.String(), "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
		pause = min(pause*2, 5*time.Second)
	}
}

// ErrTakeOverLost: a start with Config.TakeOver lost its claim of the log
// to another server.
var ErrTakeOverLost = errors.New("another leader claimed the log first")

func (n *Node) start(ctx context.Context) error {
	lease, etag, found, err := n.log.ReadLease(ctx)
	if err != nil {
		return err
	}
	n.noteLease(lease, etag, found)
	if n.cfg.TakeOver {
		eng, err := engine.Open(ctx, n.cfg.Engine, n.log)
		if errors.Is(err, persist.ErrFenced) {
			return fmt.Errorf("take over: %w: %w", ErrTakeOverLost, err)
		}
		if err != nil {
			return err
		}
		// Replace whatever lease is there, conditionally on what we read.
		n.leaseETag = ""
		if found {
			n.leaseETag = etag
		}
		n.becomeLeader(ctx, eng, "--take-over: claimed the log at start")
		return nil
	}
	// Our own provisional lease (an earlier attempt of this start that won
	// the election but failed to claim, e.g. an S3 timeout): claim again.
	ours := found && lease.LeaderID == "" && lease.URL == n.cfg.AdvertiseURL
	if !found || lease.Released || ours {
		// No leader: stand for election by creating the lease
		// (If-None-Match: *, or If-Match on the released one). Of servers
		// started together exactly one writes it; the others follow. The
		// winner then claims the log.
		provisional := s3log.Lease{URL: n.cfg.AdvertiseURL, RenewedAt: time.Now().UTC()}
		prev := ""
		if found {
			prev = etag
		}
		etag, err := n.log.WriteLease(ctx, provisional, prev)
		if errors.Is(err, s3log.ErrLeaseChanged) {
			if lease, etag, found, err = n.log.ReadLease(ctx); err != nil {
				return err
			}
			n.noteLease(lease, etag, found)
			return n.becomeReplica(ctx, "another server created the lease first")
		}
		if err != nil {
			return err
		}
		n.lease, n.leaseETag = provisional, etag
		eng, err := engine.Open(ctx, n.cfg.Engine, n.log)
		switch {
		case err == nil:
			n.becomeLeader(ctx, eng, "no lease found at start-up: claimed the log")
			return nil
		case !errors.Is(err, persist.ErrFenced):
			return err
		}
		n.lease, n.leaseETag, n.leaseSeen = s3log.Lease{}, "", false
		// Another server started at the same time and claimed first.
		n.cfg.Logger.Info("failover: another server claimed the log first; following it", "err", err)
	}
	return n.becomeReplica(ctx, "a leader holds the lease")
}

// noteLease records the lease as read by a replica: a change (or the first
// sight) restarts the takeover clock.
func (n *Node) noteLease(lease s3log.Lease, etag string, found bool) {
	changed := found != n.leaseSeen || etag != n.leaseETag || lease != n.lease
	n.lease, n.leaseETag, n.leaseSeen = lease, etag, found
	n.mu.Lock()
	if changed || n.mu.leaseSeenAt.IsZero() {
		n.mu.leaseSeenAt = time.Now()
	}
	if found {
		n.mu.leaderID = lease.LeaderID
	}
	n.mu.Unlock()
	if changed && found && Role(n.role.Load()) != RoleLeader {
		n.cfg.OnLeader(n.leaderURL(), n.lease.LeaderID)
	}
}

// leaderURL is where a replica sends clients: the lease's URL, unless the
// lease is this server's own from a term it lost (a redirect to itself
// would loop; until the new leader writes its lease, none is known).
func (n *Node) leaderURL() string {
	if !n.leaseSeen || n.lease.URL == n.cfg.AdvertiseURL {
		return ""
	}
	return n.lease.URL
}

func (n *Node) becomeReplica(ctx context.Context, reason string) error {
	eng, err := engine.OpenReplica(ctx, n.cfg.Engine, n.log)
	if err != nil {
		return err
	}
	prev := Role(n.role.Swap(int32(RoleReplica)))
	n.mu.Lock()
	n.mu.leaseSeenAt = time.Now() // a full lease timeout from now at least
	n.mu.caughtUpAt = time.Now()
	n.mu.Unlock()
	n.setEngine(eng)
	n.cfg.OnLeader(n.leaderURL(), n.lease.LeaderID)
	n.cfg.Logger.Info("failover: role change", "from", prev.String(), "to", "replica", "reason", reason,
		"version", uint64(eng.Version()), "leader_id", n.lease.LeaderID, "leader_url", n.lease.URL)
	return nil
}

// becomeLeader publishes eng (leading) and writes its lease.
func (n *Node) becomeLeader(ctx context.Context, eng *engine.Engine, reason string) {
	prev := Role(n.role.Swap(int32(RoleLeader)))
	n.lease = s3log.Lease{LeaderID: eng.LeaderID(), URL: n.cfg.AdvertiseURL, TermFirstVersion: uint64(eng.TermFirstVersion())}
	n.mu.Lock()
	n.mu.leaderID = eng.LeaderID()
	n.mu.renewedAt = time.Now()
	n.mu.Unlock()
	n.setEngine(eng)
	n.cfg.OnLeader(n.cfg.AdvertiseURL, eng.LeaderID())
	n.cfg.Logger.Info("failover: role change", "from", prev.String(), "to", "leader", "reason", reason,
		"leader_id", eng.LeaderID(), "version", uint64(eng.Version()), "url", n.cfg.AdvertiseURL)
	// The first lease write replaces whatever lease was there (the one a
	// replica watched go stale), conditionally on its ETag.
	n.renew(ctx, eng)
}

// Run keeps the role until ctx ends. It returns the engine serving then
// (the caller closes it).
func (n *Node) Run(ctx context.Context) *engine.Engine {
	for ctx.Err() == nil {
		switch Role(n.role.Load()) {
		case RoleLeader:
			n.runLeader(ctx)
		default:
			n.runReplica(ctx)
		}
	}
	return n.Engine()
}

// runLeader renews the lease until the leader loses the log.
func (n *Node) runLeader(ctx context.Context) {
	eng := n.Engine()
	ticker := time.NewTicker(n.cfg.RenewInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-eng.Deposed():
			n.stepDown(ctx, eng, "fenced: another leader wrote the next segment (412)")
			return
		case <-ticker.C:
		}
		if reason := n.renew(ctx, eng); reason != "" && !plantNoFence {
			eng.Depose(errors.New(reason))
			n.stepDown(ctx, eng, reason)
			return
		}
	}
}

// renew writes the next lease; it returns why leadership is lost, or "".
func (n *Node) renew(ctx context.Context, eng *engine.Engine) string {
	n.mu.Lock()
	renewedAt := n.mu.renewedAt
	n.mu.Unlock()
	// Judge our own lease first: after a pause (SIGSTOP, a stalled VM)
	// replicas may have taken over already.
	if time.Since(renewedAt) >= n.cfg.LeaseTimeout {
		return fmt.Sprintf("lease not renewed for %s (lease_timeout %s): a replica may have taken over",
			time.Since(renewedAt).Round(time.Millisecond), n.cfg.LeaseTimeout)
	}
	// A renewal slower than the timeout is worthless: replicas act on
	// their clocks meanwhile. Bound it so the loop checks again.
	rctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTimeout)
	defer cancel()
	start := time.Now()
	next := n.lease
	next.Renewals++
	next.RenewedAt = start.UTC()
	etag, err := n.log.WriteLease(rctx, next, n.leaseETag)
	if errors.Is(err, s3log.ErrLeaseChanged) {
		cur, curETag, found, rerr := n.log.ReadLease(rctx)
		switch {
		case rerr != nil:
			err = rerr
		case found && cur.LeaderID != next.LeaderID && cur.TermFirstVersion > next.TermFirstVersion:
			return fmt.Sprintf("the lease names a later leader term (%s from version %d)", cur.LeaderID, cur.TermFirstVersion)
		default:
			// An earlier term's lease (the one we replaced, renewed once
			// more by a leader that does not know yet), or none: take it.
			etag, err = n.log.WriteLease(rctx, next, curETag)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			n.cfg.Logger.Warn("failover: lease renewal failed", "err", err, "since_last_renewal", time.Since(renewedAt).String())
		}
		return ""
	}
	n.lease, n.leaseETag = next, etag
	n.mu.Lock()
	n.mu.renewedAt = start
	n.mu.Unlock()
	return ""
}

// stepDown turns a leader that lost the log into a replica.
func (n *Node) stepDown(ctx context.Context, eng *engine.Engine, reason string) {
	n.stepDowns.Add(1)
	n.cfg.Logger.Warn("failover: leader lost the log; stepping down", "reason", reason, "leader_id", eng.LeaderID())
	grace, cancel := context.WithTimeout(context.Background(), time.Second)
	eng.Close(grace) // answers whatever is left Deposed
	cancel()
	n.lease, n.leaseETag, n.leaseSeen = s3log.Lease{}, "", false
	for ctx.Err() == nil {
		if lease, etag, found, err := n.log.ReadLease(ctx); err == nil {
			n.noteLease(lease, etag, found)
		}
		if err := n.becomeReplica(ctx, reason); err == nil {
			return
		} else if ctx.Err() == nil {
			n.cfg.Logger.Warn("failover: could not open as a replica; retrying", "err", err)
			n.role.Store(int32(RoleReplica))
			select {
			case <-time.After(n.cfg.PollInterval):
			case <-ctx.Done():
			}
		}
	}
}

// runReplica follows the log and takes over when the lease goes stale.
func (n *Node) runReplica(ctx context.Context) {
	eng := n.Engine()
	if eng == nil || !eng.IsReplica() {
		if err := n.becomeReplica(ctx, "recovering after a failed step-down"); err != nil {
			select {
			case <-time.After(n.cfg.PollInterval):
			case <-ctx.Done():
			}
		}
		return
	}
	ticker := time.NewTicker(n.cfg.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		n.followOnce(ctx, eng)
		rctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTimeout)
		lease, etag, found, err := n.log.ReadLease(rctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				n.cfg.Logger.Warn("failover: replica could not read the lease", "err", err)
			}
			continue
		}
		n.noteLease(lease, etag, found)
		n.mu.Lock()
		stale := time.Since(n.mu.leaseSeenAt)
		n.mu.Unlock()
		if stale < n.cfg.LeaseTimeout && !lease.Released {
			continue
		}
		reason := fmt.Sprintf("lease unchanged for %s (lease_timeout %s)", stale.Round(time.Millisecond), n.cfg.LeaseTimeout)
		switch {
		case lease.Released:
			reason = "the leader released its lease (clean shutdown)"
		case !found:
			reason = fmt.Sprintf("no lease for %s (lease_timeout %s)", stale.Round(time.Millisecond), n.cfg.LeaseTimeout)
		}
		if n.takeOver(ctx, eng, reason) {
			return
		}
	}
}

func (n *Node) followOnce(ctx context.Context, eng *engine.Engine) {
	read := 0
	for ctx.Err() == nil {
		adv, err := eng.Follow(ctx)
		if err != nil {
			n.cfg.Logger.Warn("failover: replica could not follow the log", "err", err)
			return
		}
		read += adv
		n.mu.Lock()
		n.mu.lagVersions = uint64(read)
		if adv == 0 {
			n.mu.caughtUpAt = time.Now()
		}
		n.mu.Unlock()
		if adv == 0 {
			return
		}
	}
}

// takeOver promotes the replica; true when it leads now.
func (n *Node) takeOver(ctx context.Context, eng *engine.Engine, reason string) bool {
	n.cfg.Logger.Info("failover: taking over", "reason", reason, "previous_leader_id", n.lease.LeaderID, "version", uint64(eng.Version()))
	staleETag := n.leaseETag
	if err := eng.Promote(ctx); err != nil {
		n.cfg.Logger.Warn("failover: takeover failed; staying a replica", "err", err)
		n.mu.Lock()
		n.mu.leaseSeenAt = time.Now() // give whoever won a full timeout
		n.mu.Unlock()
		return false
	}
	n.takeovers.Add(1)
	n.leaseETag = staleETag
	n.becomeLeader(ctx, eng, reason)
	return true
}

// Release gives up the lease of a leader that stops cleanly (its engine
// closed, everything acknowledged is stored), so that a replica takes over
// at once instead of after lease_timeout. A replica has nothing to release.
func (n *Node) Release(ctx context.Context) {
	if Role(n.role.Load()) != RoleLeader || n.leaseETag == "" {
		return
	}
	released := n.lease
	released.Renewals++
	released.RenewedAt = time.Now().UTC()
	released.Released = true
	rctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTimeout)
	defer cancel()
	if _, err := n.log.WriteLease(rctx, released, n.leaseETag); err != nil {
		n.cfg.Logger.Warn("failover: could not release the lease; replicas take over after lease_timeout", "err", err)
		return
	}
	n.cfg.Logger.Info("failover: lease released", "leader_id", released.LeaderID)
}
