package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// weaseldbPeer is bin/weaseldb on the disk backend, driven by bin/loadgen
// (the project's own raw-HTTP load generator) with --json. It does not
// implement peer: loadgen runs the closed loop itself.
type weaseldbPeer struct {
	addr    string
	loadgen string
	cmd     *exec.Cmd
	done    chan error
}

func startWeaselDB(ctx context.Context, binary, loadgen, dir string) (*weaseldbPeer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("weaseldb dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "weaseldb.log"))
	if err != nil {
		return nil, fmt.Errorf("weaseldb log: %w", err)
	}
	defer logf.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(binary, "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--persist", "disk")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &weaseldbPeer{addr: addr, loadgen: loadgen, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("weaseldb exited before ready (log in %s): %v", dir, err)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("weaseldb at %s not ready after 15s", addr)
		}
	}
}

// stop sends SIGTERM (graceful shutdown) and waits.
func (p *weaseldbPeer) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("weaseldb exit: %w", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("weaseldb did not stop within 15s of SIGTERM")
	}
}

// loadgenSummary is the part of loadgen's --json output used here.
type loadgenSummary struct {
	Run struct {
		Seconds    float64 `json:"seconds"`
		Throughput float64 `json:"ok_per_sec"`
		Outcomes   struct {
			OK          uint64 `json:"ok"`
			Conflict    uint64 `json:"conflict"`
			TooOld      uint64 `json:"too_old"`
			Status4xx   uint64 `json:"status_4xx"`
			Unavailable uint64 `json:"unavailable"`
			Status5xx   uint64 `json:"status_5xx"`
			Transport   uint64 `json:"transport"`
		} `json:"outcomes"`
		Latency struct {
			P50Ms float64 `json:"p50_ms"`
			P99Ms float64 `json:"p99_ms"`
			MaxMs float64 `json:"max_ms"`
		} `json:"latency"`
	} `json:"run"`
}

// run drives the server with loadgen in the shape of w: 1 point read +
// 1 write per commit, one request in flight per connection.
func (p *weaseldbPeer) run(ctx context.Context, w workload) (*result, error) {
	args := []string{"--addr", p.addr, "--json", "--quiet",
		"--connections", strconv.Itoa(w.connections), "--pipeline", "1",
		"--dist", w.dist, "--theta", strconv.FormatFloat(w.theta, 'g', -1, 64),
		"--keys", strconv.FormatUint(w.keys, 10), "--key-bytes", strconv.Itoa(w.keyBytes),
		"--value-bytes", strconv.Itoa(w.valueBytes), "--point-reads", "1", "--writes", "1",
		"--request-id=false", "--seed", strconv.FormatUint(w.seed, 10),
		"--duration", w.duration.String(), "--warmup", w.warmup.String()}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p.loadgen, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loadgen %v: %w: %s", args, err, lastLines(stderr.Bytes(), 5))
	}
	var s loadgenSummary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		return nil, fmt.Errorf("loadgen json: %w", err)
	}
	o := s.Run.Outcomes
	r := &result{
		Peer: "weaseldb", Dist: w.dist, Connections: w.connections, Seconds: s.Run.Seconds,
		Commits: o.OK, Conflicts: o.Conflict + o.TooOld,
		Errors:      o.Status4xx + o.Unavailable + o.Status5xx + o.Transport,
		CommitsPerS: s.Run.Throughput,
		P50Ms:       s.Run.Latency.P50Ms, P99Ms: s.Run.Latency.P99Ms, MaxMs: s.Run.Latency.MaxMs,
	}
	return r, nil
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
