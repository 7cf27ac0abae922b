package logtool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/persist/s3log"
	"github.com/weaseldb/weaseldb/tx"
)

// segment is one stored segment as the tools see it, whatever the backend.
type segment struct {
	first, last tx.Version
	count       uint32
	bytes       int64
	leader      string
	where       string // file and offset, or object key

	frame disk.InspectedFrame // disk only
}

// problem is something wrong with the log: where and what.
type problem struct {
	Where   string `json:"where"`
	Problem string `json:"problem"`
}

// view is what a source found: every valid stored segment, recovery's plan
// over them, and what is wrong.
type view struct {
	location string
	backend  string
	files    []disk.InspectedFile // disk only
	// segments are the valid stored segments sorted by First.
	segments []segment
	// run is the contiguous run recovery would keep (a prefix of the
	// segments that survive the plan), discarded what it would drop.
	run       []segment
	discarded []segment
	// problems make recovery refuse (or lose acknowledged data); repairs
	// are what recovery would do by itself (cut a torn tail, drop
	// segments after a gap).
	problems []problem
	repairs  []problem
	notes    []string
	policies map[string]tx.Version
	// lockHolder names a server holding the data directory, "" if none.
	lockHolder string
}

// source is a log to read offline.
type source interface {
	// load reads and checks every stored segment's framing and checksum.
	load(ctx context.Context) (*view, error)
	// read returns a segment's bytes (validated).
	read(ctx context.Context, s segment) ([]byte, error)
	close()
}

// diskSource reads a disk data directory under a shared lock (so that no
// server opens it meanwhile), or without one when a server holds it.
type diskSource struct {
	dir    string
	lock   *os.File
	holder string
	files  map[string]*os.File // log files opened by read
}

// openDiskSource opens a data directory; hold keeps a shared lock on it
// while the source is open (copy), else the lock is only probed to name a
// server holding it (stat, verify and dump must never keep a server from
// starting).
func openDiskSource(dir string, hold bool) (*diskSource, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("data directory %s is not a directory", dir)
	}
	s := &diskSource{dir: dir}
	if !hold {
		holder, err := disk.ProbeLock(dir)
		s.holder = holder
		return s, err
	}
	lock, err := disk.ShareLock(dir)
	if err != nil {
		if !strings.Contains(err.Error(), "is in use") {
			return nil, err
		}
		s.holder = disk.LockHolder(dir)
	}
	s.lock = lock
	return s, nil
}

func (s *diskSource) close() {
	for _, f := range s.files {
		f.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

func (s *diskSource) load(ctx context.Context) (*view, error) {
	in, err := disk.Inspect(s.dir)
	if err != nil {
		return nil, err
	}
	v := &view{location: s.dir, backend: "disk", files: in.Files, policies: in.Policies, lockHolder: s.holder}
	if s.holder != "" {
		v.notes = append(v.notes, fmt.Sprintf("a server holds this directory (%s): reading a live log, the newest segments may be missing or in flight", s.holder))
	}
	if in.Damaged != "" {
		first, _, _ := strings.Cut(in.Damaged, "\n\n")
		v.problems = append(v.problems, problem{Where: "DAMAGED", Problem: "a server marked this directory damaged; recovery refuses it: " + strings.ReplaceAll(strings.TrimSpace(first), "\n", " ")})
	}
	if in.Cut != nil {
		v.problems = append(v.problems, problem{Where: "SIZES", Problem: in.Cut.Error()})
	}
	for _, r := range in.Rescued {
		v.notes = append(v.notes, "rescued copy of a deleted log file: "+r)
	}
	if in.Corrupt != nil {
		v.problems = append(v.problems, problem{Where: cutWhere(in.Corrupt.Error()), Problem: in.Corrupt.Error()})
	}
	if t := in.Torn; t != nil {
		what := fmt.Sprintf("incomplete frame at the end of the newest file: recovery would cut %d bytes at offset %d", t.Bytes, t.Offset)
		if t.Named {
			what += fmt.Sprintf(" (segment starting at version %d)", t.First)
		}
		what += "; a write torn by a crash was never acknowledged, a file cut while no server ran loses what it held (" + t.Reason + ")"
		v.repairs = append(v.repairs, problem{Where: fmt.Sprintf("%s offset %d", t.File, t.Offset), Problem: what})
	}
	for _, fr := range in.Frames {
		h := fr.Header
		v.segments = append(v.segments, segment{first: h.First, last: h.Last, count: h.Count, bytes: int64(h.Bytes),
			leader: string(h.LeaderID), where: fr.Where(), frame: fr})
	}
	if in.PoliciesErr != nil {
		v.problems = append(v.problems, problem{Where: "retention.json", Problem: in.PoliciesErr.Error()})
	}
	applyPlan(v, in.Plan, in.PlanErr)
	return v, nil
}

// cutWhere extracts "NAME offset N" from a disk corruption message.
func cutWhere(msg string) string {
	_, rest, ok := strings.Cut(msg, "log file ")
	if !ok {
		return ""
	}
	parts := strings.Fields(rest)
	if len(parts) < 3 {
		return ""
	}
	name := parts[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name + " offset " + strings.TrimSuffix(parts[2], ":")
}

// read reads a frame, keeping its file open for the next ones (a log has
// a few files of many frames).
func (s *diskSource) read(_ context.Context, seg segment) ([]byte, error) {
	f := s.files[seg.frame.File]
	if f == nil {
		var err error
		if f, err = os.Open(filepath.Join(s.dir, seg.frame.File)); err != nil {
			return nil, fmt.Errorf("read segment %d: %w", seg.first, err)
		}
		if s.files == nil {
			s.files = map[string]*os.File{}
		}
		s.files[seg.frame.File] = f
	}
	return disk.ReadFrameFrom(f, seg.frame)
}

// applyPlan splits v.segments into the run and the discarded by recovery's
// plan (rec lists SegmentInfos in First order).
func applyPlan(v *view, rec persist.Recovery, planErr error) {
	if planErr != nil {
		v.problems = append(v.problems, problem{Where: "", Problem: planErr.Error()})
		return
	}
	keep := make(map[tx.Version]bool, len(rec.Segments))
	for _, s := range rec.Segments {
		keep[s.First] = true
	}
	for _, s := range v.segments {
		if keep[s.first] {
			v.run = append(v.run, s)
			delete(keep, s.first) // one copy only
			continue
		}
		v.discarded = append(v.discarded, s)
		v.repairs = append(v.repairs, problem{Where: s.where,
			Problem: fmt.Sprintf("segment %d..%d follows a gap, overlaps the run or belongs to a deposed leader term: recovery would discard it (it was never acknowledged)", s.first, s.last)})
	}
}

// s3Source reads the segment objects under a prefix.
type s3Source struct {
	log  *s3log.Log
	stop func()
}

func (s *s3Source) close() {
	s.log.Close()
	if s.stop != nil {
		s.stop()
	}
}

func (s *s3Source) load(ctx context.Context) (*view, error) {
	listed, err := s.log.ListSegments(ctx)
	if err != nil {
		return nil, err
	}
	v := &view{location: s.log.Location(), backend: "s3"}
	stored, err := s.readAll(ctx, listed)
	if err != nil {
		return nil, err
	}
	for i, l := range listed {
		key := s.log.SegmentKey(l.First)
		h, herr := stored[i].Header, stored[i].Err
		if herr != nil {
			if i == len(listed)-1 {
				v.repairs = append(v.repairs, problem{Where: key, Problem: "the newest object does not validate: recovery would delete it as a torn tail (never acknowledged if a write was cut short; lost if it was damaged later): " + herr.Error()})
			} else {
				v.problems = append(v.problems, problem{Where: key, Problem: "damaged segment object in the middle of the log; recovery refuses it: " + herr.Error()})
			}
			continue
		}
		v.segments = append(v.segments, segment{first: h.First, last: h.Last, count: h.Count, bytes: stored[i].Bytes,
			leader: string(h.LeaderID), where: key})
	}
	if len(v.problems) == 0 {
		rec, perr := persist.PlanRecovery(stored)
		applyPlan(v, rec, perr)
	}
	data, err := s.log.GetObject(ctx, s.log.PoliciesKey())
	switch {
	case errors.Is(err, s3log.ErrNoSuchKey):
	case err != nil:
		return nil, err
	default:
		p, perr := persist.DecodePolicies(data)
		if perr != nil {
			v.problems = append(v.problems, problem{Where: s.log.PoliciesKey(), Problem: perr.Error()})
		}
		v.policies = p
	}
	return v, nil
}

// s3ReadsInFlight bounds the GETs load keeps outstanding.
const s3ReadsInFlight = 16

// readAll GETs and checks every listed segment object, s3ReadsInFlight at
// once, keeping only the headers.
func (s *s3Source) readAll(ctx context.Context, listed []persist.SegmentInfo) ([]persist.StoredSegment, error) {
	stored := make([]persist.StoredSegment, len(listed))
	errs := make([]error, len(listed))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(s3ReadsInFlight, len(listed)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				first := listed[i].First
				data, err := s.log.GetObject(ctx, s.log.SegmentKey(first))
				if err != nil {
					errs[i] = err
					continue
				}
				h, herr := persist.DecodeSegmentHeader(data)
				if herr == nil && h.First != first {
					herr = fmt.Errorf("%w: object named %d holds versions %d..%d", persist.ErrCorruption, first, h.First, h.Last)
				}
				h.LeaderID = bytes.Clone(h.LeaderID) // do not keep the object alive
				stored[i] = persist.StoredSegment{First: first, Bytes: int64(len(data)), Header: h, Err: herr}
			}
		}()
	}
	for i := range listed {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return stored, errors.Join(errs...)
}

func (s *s3Source) read(ctx context.Context, seg segment) ([]byte, error) {
	data, err := s.log.GetObject(ctx, seg.where)
	if err != nil {
		return nil, err
	}
	if h, err := persist.DecodeSegmentHeader(data); err != nil || h.First != seg.first {
		return nil, fmt.Errorf("%s changed since it was listed: %w", seg.where, errors.Join(err, persist.ErrCorruption))
	}
	return data, nil
}
