package spawn

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Cluster is a leader and replicas sharing one S3 log, served by a
// standalone `weaseldb fakes3` process: the set-up of a failover run.
type Cluster struct {
	Servers []*Server // Servers[0] started first: the leader
	s3      *exec.Cmd
	s3Dir   string
	killed  map[*Server]bool
}

// StartCluster starts `weaseldb fakes3` on a free port, then a server that
// becomes the leader, then replicas that follow it (opts.Backend and
// opts.ConfigFile are replaced by the generated S3 configuration; each
// server gets its own data directory for its status index).
func StartCluster(opts Options, replicas int) (*Cluster, error) {
	if opts.ConfigFile != "" {
		return nil, errors.New("spawn: a cluster generates its own configuration: no --server-config")
	}
	if opts.Binary == "" {
		opts.Binary = "./bin/weaseldb"
	}
	dir, err := os.MkdirTemp("", "loadgen-s3-")
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	c := &Cluster{s3Dir: dir, killed: map[*Server]bool{}}
	c.s3 = exec.Command(opts.Binary, "fakes3", "--listen", "127.0.0.1:0", "--buckets", "loadgen", "--dir", filepath.Join(dir, "objects"))
	out, err := c.s3.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("spawn: %w", err)
	}
	if err := c.s3.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("spawn: start fakes3: %w", err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "fakes3 listening on "); ok {
				urls <- strings.TrimSpace(rest)
			}
		}
	}()
	var url string
	select {
	case url = <-urls:
	case <-time.After(30 * time.Second):
		c.stopS3()
		return nil, errors.New("spawn: fakes3 did not start within 30s")
	}
	cfg := filepath.Join(dir, "s3.toml")
	text := fmt.Sprintf("[persist]\nbackend = \"s3\"\nbucket = \"loadgen\"\nendpoint = %q\nuse_path_style = true\n"+
		"access_key_id = \"loadgen\"\nsecret_access_key = \"loadgen\"\n", url)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		c.stopS3()
		return nil, fmt.Errorf("spawn: %w", err)
	}
	opts.Backend, opts.ConfigFile = "s3", cfg
	for i := 0; i <= replicas; i++ {
		o := opts
		o.Replica = i > 0
		s, err := Start(o)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	return c, nil
}

// Addrs returns the servers' addresses, the leader first, comma-separated
// (loadgen's --addr list).
func (c *Cluster) Addrs() string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr
	}
	return strings.Join(addrs, ",")
}

// KillLeader SIGKILLs the first server (the leader at start).
func (c *Cluster) KillLeader() {
	s := c.Servers[0]
	c.killed[s] = true
	s.kill()
}

// Stop stops every server still running (SIGTERM, exit 0 checked), then
// the fake S3.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Servers {
		if !c.killed[s] {
			errs = append(errs, s.Stop())
		} else if !s.opts.Keep {
			os.RemoveAll(s.tmp)
		}
	}
	c.stopS3()
	return errors.Join(errs...)
}

func (c *Cluster) stopS3() {
	c.s3.Process.Kill()
	c.s3.Wait()
	os.RemoveAll(c.s3Dir)
}
