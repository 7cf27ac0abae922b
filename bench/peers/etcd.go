package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// etcdPeer is an embedded single-member etcd (the server in this process,
// its WAL fsynced before every answer as etcd always does), reached by
// clientv3 over loopback gRPC: one client, hence one TCP connection, per
// worker, as WeaselDB's loadgen uses one HTTP connection per worker.
type etcdPeer struct {
	e        *embed.Etcd
	endpoint string
}

func startEtcd(dir string) (*etcdPeer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("etcd dir: %w", err)
	}
	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = dir
	// etcd logs through zap, and even at "error" it reports its own
	// listeners closing at shutdown: silence it, errors come back as values.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A run writes a few hundred thousand revisions of 100-byte values:
	// well within the default 2 GiB quota, so no compaction is needed.
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready after 30s")
	}
	return &etcdPeer{e: e, endpoint: cu.Host}, nil
}

func (p *etcdPeer) stop() { p.e.Close() }

func (p *etcdPeer) name() string { return "etcd" }

func (p *etcdPeer) dial(ctx context.Context) (conn, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{p.endpoint},
		DialTimeout: 5 * time.Second,
		// The client logs a warning for every request cancelled at the end
		// of a run; errors reach the driver as values anyway.
		Logger:      zap.NewNop(),
		Context:     ctx,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &etcdConn{c: c}, nil
}

type etcdConn struct{ c *clientv3.Client }

// commit is Txn(If(ModRevision(read) < readVersion+1)).Then(Put(write)):
// the read key was last written at or before the version this worker read
// at (a key never written has ModRevision 0), exactly WeaselDB's
// point_read precondition; the header revision is the newest version.
func (c *etcdConn) commit(ctx context.Context, t *txn) (outcome, error) {
	resp, err := c.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(string(t.read)), "<", int64(t.readVersion)+1)).
		Then(clientv3.OpPut(string(t.write), string(t.value))).
		Commit()
	if err != nil {
		return outcome{}, fmt.Errorf("etcd txn: %w", err)
	}
	return outcome{committed: resp.Succeeded, version: uint64(resp.Header.Revision)}, nil
}

func (c *etcdConn) close() error { return c.c.Close() }
