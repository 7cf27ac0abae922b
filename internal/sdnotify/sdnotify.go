// Package sdnotify speaks systemd's readiness protocol (sd_notify(3)) without
// a library: one datagram of newline-separated KEY=VALUE assignments sent to
// the Unix socket named by $NOTIFY_SOCKET ("@name" is the abstract
// namespace). With Type=notify in the unit, systemd considers the service
// started only once it gets READY=1, and stopping once it gets STOPPING=1.
//
// Outside systemd (no NOTIFY_SOCKET) every call does nothing, so the server
// calls it unconditionally.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Messages the server sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET.
// It returns nil without doing anything when the variable is unset. The
// error is for the log only: readiness notification must never stop the
// server.
func Notify(state string) error {
	return NotifySocket(os.Getenv("NOTIFY_SOCKET"), state)
}

// NotifySocket sends state to the socket path (Notify with the path given).
func NotifySocket(path, state string) error {
	if path == "" {
		return nil
	}
	name := path
	switch {
	case strings.HasPrefix(path, "@"):
		name = "\x00" + path[1:] // the abstract namespace
	case !strings.HasPrefix(path, "/"):
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither a path nor @abstract", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", path, err)
	}
	return nil
}
