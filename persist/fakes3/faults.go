package fakes3

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Op is a class of S3 request, the unit of fault injection and counting.
type Op uint8

const (
	OpGetObject Op = iota
	OpHeadObject
	OpPutObject
	OpDeleteObject
	OpDeleteObjects
	OpListObjects
	OpBucket    // CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation
	OpMultipart // Create/Complete/AbortMultipartUpload, UploadPart, ListParts, ListMultipartUploads
	opCount
)

// String returns the S3 operation name.
func (op Op) String() string {
	switch op {
	case OpGetObject:
		return "GetObject"
	case OpHeadObject:
		return "HeadObject"
	case OpPutObject:
		return "PutObject"
	case OpDeleteObject:
		return "DeleteObject"
	case OpDeleteObjects:
		return "DeleteObjects"
	case OpListObjects:
		return "ListObjectsV2"
	case OpBucket:
		return "Bucket"
	case OpMultipart:
		return "Multipart"
	}
	return "unknown"
}

// Fault says how to misbehave for one class of request. Rates are
// probabilities in [0, 1] drawn independently per request; the zero Fault
// is a well-behaved server.
type Fault struct {
	// Latency is added to every request before it is looked at.
	Latency time.Duration
	// LatencyJitter adds a uniformly random extra delay in [0, LatencyJitter).
	LatencyJitter time.Duration
	// SlowDownRate is the fraction answered 503 SlowDown without effect.
	SlowDownRate float64
	// InternalErrorRate is the fraction answered 500 InternalError without
	// effect.
	InternalErrorRate float64
	// DropRate is the fraction whose connection is closed without an answer
	// and without effect.
	DropRate float64
	// DropAfterApplyRate is the fraction that take effect (the object is
	// stored or deleted) and then have their connection closed without an
	// answer: the client cannot know whether its write happened.
	DropAfterApplyRate float64
	// AnswerLatency is added after a request took effect and before its
	// answer is sent; AnswerJitter adds a uniformly random extra in
	// [0, AnswerJitter). With jitter, requests complete out of order twice
	// over: the effects land in one order (Latency/LatencyJitter) and the
	// answers arrive in another, possibly after the client gave up (the
	// effect landed, the client saw a timeout).
	AnswerLatency time.Duration
	AnswerJitter  time.Duration
	// LateApplyRate is the fraction held, body read, until the client gives
	// up (its timeout, a closed connection), and applied only then: the
	// write lands after its client saw it fail, the "effect lands, answer
	// lost" of an S3 request that outlives its timeout. Held at most
	// lateApplyHoldMax.
	LateApplyRate float64
}

// lateApplyHoldMax bounds how long a LateApplyRate request waits for its
// client to give up, so that a client without a timeout cannot hang it.
const lateApplyHoldMax = 2 * time.Minute

// Faults is the run-time switchboard of fault injection. All methods are
// safe for concurrent use, including while requests are being served.
type Faults struct {
	mu struct {
		sync.Mutex
		byOp   [opCount]Fault
		resume chan struct{} // non-nil while paused; closed by Resume
		late   chan struct{} // non-nil while late applies are held; closed by ReleaseLate
	}
	requests [opCount]atomic.Uint64
	injected atomic.Uint64
}

// Set installs f for the given operations, or for every operation when
// none is given.
func (f *Faults) Set(fault Fault, ops ...Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ops) == 0 {
		for i := range f.mu.byOp {
			f.mu.byOp[i] = fault
		}
		return
	}
	for _, op := range ops {
		if op < opCount {
			f.mu.byOp[op] = fault
		}
	}
}

// Clear removes every fault, resumes a paused server and releases held
// late applies.
func (f *Faults) Clear() {
	f.Set(Fault{})
	f.Resume()
	f.ReleaseLate()
}

// Pause makes every request that arrives from now on wait until Resume
// (or until its client gives up).
func (f *Faults) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.resume == nil {
		f.mu.resume = make(chan struct{})
	}
}

// Resume releases paused requests.
func (f *Faults) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.resume != nil {
		close(f.mu.resume)
		f.mu.resume = nil
	}
}

// HoldLate makes LateApplyRate requests wait, after their client gave up,
// until ReleaseLate: a test then chooses the moment the late write lands.
func (f *Faults) HoldLate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.late == nil {
		f.mu.late = make(chan struct{})
	}
}

// ReleaseLate lets held late applies take effect.
func (f *Faults) ReleaseLate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.late != nil {
		close(f.mu.late)
		f.mu.late = nil
	}
}

// lateGate returns the channel a late apply waits on (nil: none).
func (f *Faults) lateGate() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.late
}

// Requests returns how many requests of op arrived (including the ones a
// fault answered).
func (f *Faults) Requests(op Op) uint64 {
	if op >= opCount {
		return 0
	}
	return f.requests[op].Load()
}

// Injected returns how many requests were answered by an injected error or
// dropped.
func (f *Faults) Injected() uint64 { return f.injected.Load() }

// verdict is what the fault injector decided for one request.
type verdict uint8

const (
	verdictServe verdict = iota
	verdictSlowDown
	verdictInternalError
	verdictDrop
	verdictDropAfterApply
	verdictApplyLate
)

// admit waits out a pause and the configured latency and decides the fate
// of one request. It returns ctx's error if the client went away.
func (f *Faults) admit(ctx context.Context, op Op) (verdict, time.Duration, error) {
	f.requests[op].Add(1)
	f.mu.Lock()
	fault := f.mu.byOp[op]
	resume := f.mu.resume
	f.mu.Unlock()
	if resume != nil {
		select {
		case <-resume:
		case <-ctx.Done():
			return verdictServe, 0, ctx.Err()
		}
	}
	delay := fault.Latency
	if fault.LatencyJitter > 0 {
		delay += time.Duration(rand.Int64N(int64(fault.LatencyJitter)))
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return verdictServe, 0, ctx.Err()
		}
	}
	v := verdictServe
	switch {
	case hit(fault.DropRate):
		v = verdictDrop
	case hit(fault.SlowDownRate):
		v = verdictSlowDown
	case hit(fault.InternalErrorRate):
		v = verdictInternalError
	case hit(fault.DropAfterApplyRate):
		v = verdictDropAfterApply
	case hit(fault.LateApplyRate):
		v = verdictApplyLate
	}
	if v != verdictServe {
		f.injected.Add(1)
	}
	answerDelay := fault.AnswerLatency
	if fault.AnswerJitter > 0 {
		answerDelay += time.Duration(rand.Int64N(int64(fault.AnswerJitter)))
	}
	return v, answerDelay, nil
}

func hit(rate float64) bool { return rate > 0 && rand.Float64() < rate }
