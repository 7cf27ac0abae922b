package fakes3

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/weaseldb/weaseldb/netpoll"
)

// NetpollServer is a Server hosted on a netpoll server of its own, reached
// on a TCP port, in-process through local connections (socketpairs), or
// both.
//
// Through netpoll's http.Handler adapter the server cannot hijack a
// connection: the Drop faults answer 500 InternalError there instead (use
// ListenTCP for dropped-connection tests).
type NetpollServer struct {
	// URL is the endpoint for clients: the TCP address when one was
	// given, else a placeholder host that only DialContext reaches.
	URL string
	np  *netpoll.Server
}

// localHost is the endpoint host of a server with no TCP listener.
const localHost = "fakes3.local"

// ListenNetpoll hosts s on a new netpoll server configured by cfg (zero:
// netpoll's defaults). addr is a TCP address to listen on ("127.0.0.1:0"),
// or "" for local connections only.
func ListenNetpoll(s *Server, addr string, cfg netpoll.Config) (*NetpollServer, error) {
	// aws-chunked framing adds a few bytes per 64 KiB chunk; leave room.
	maxBody := s.opts.ObjectBytesMax + s.opts.ObjectBytesMax/8 + 64<<10
	router, err := netpoll.NewRouter([]netpoll.Route{
		{Method: "", Path: "*", Handler: netpoll.HTTPHandler(s), MaxBodyBytes: maxBody},
	})
	if err != nil {
		return nil, fmt.Errorf("fakes3 netpoll: %w", err)
	}
	np, err := netpoll.NewServer(cfg, router)
	if err != nil {
		return nil, fmt.Errorf("fakes3 netpoll: %w", err)
	}
	n := &NetpollServer{URL: "http://" + localHost, np: np}
	if addr != "" {
		bound, err := np.Listen(addr)
		if err != nil {
			np.Shutdown(context.Background())
			return nil, fmt.Errorf("fakes3 netpoll: %w", err)
		}
		n.URL = "http://" + bound.String()
	}
	return n, nil
}

// DialContext returns a new in-process connection to the server, whatever
// network and addr say: give it to an HTTP transport (s3log.Config.DialContext)
// to reach the fake without a port.
func (n *NetpollServer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return n.np.CreateLocalConnection()
}

// Close shuts the netpoll server down, waiting up to 5 s for requests in
// progress.
func (n *NetpollServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.np.Shutdown(ctx)
}
