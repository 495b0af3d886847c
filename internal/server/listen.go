package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/egressd/egressd/internal/datadir"
)

// group runs the HTTP servers of one egressd and stops them together.
type group struct {
	log     *slog.Logger
	timeout time.Duration
	servers []named
	files   []string
	errc    chan error
}

type named struct {
	name string
	srv  *http.Server
}

func newGroup(log *slog.Logger, timeout time.Duration) *group {
	return &group{log: log, timeout: timeout, errc: make(chan error, 5)}
}

// serve runs srv on served (ln, possibly wrapped) and writes ln's address to
// addrFile.
func (g *group) serve(name string, ln, served net.Listener, addrFile string, srv *http.Server) error {
	g.servers = append(g.servers, named{name, srv})
	return g.run(name, ln, addrFile, func() error {
		if err := srv.Serve(served); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

// run runs serve, a listener's loop on ln that Shutdown of a server in
// the group ends (the proxy's transparent listener), and writes ln's
// address to addrFile.
func (g *group) run(name string, ln net.Listener, addrFile string, serve func() error) error {
	bound := ln.Addr().String()
	go func() {
		if err := serve(); err != nil {
			g.errc <- fmt.Errorf("%s listener: %w", name, err)
		}
	}()
	if err := datadir.WriteFileAtomic(addrFile, []byte(bound+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", addrFile, err)
	}
	g.files = append(g.files, addrFile)
	g.log.Info(name+" listening", "addr", bound, "addr_file", addrFile)
	return nil
}

// wait blocks until ctx is done (nil) or a server fails (its error).
func (g *group) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		g.log.Info("shutting down", "cause", context.Cause(ctx).Error(), "timeout", g.timeout.String())
		return nil
	case err := <-g.errc:
		g.log.Error("listener failed; shutting down", "err", err)
		return err
	}
}

// shutdown stops every server gracefully within the timeout, then closes
// what is left. A timeout is logged, not returned: the servers stop anyway.
func (g *group) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	done := make(chan struct{}, len(g.servers))
	for _, s := range g.servers {
		go func() {
			err := s.srv.Shutdown(ctx)
			if err != nil {
				g.log.Warn("graceful shutdown incomplete; closing connections", "listener", s.name, "err", err)
				_ = s.srv.Close()
			}
			done <- struct{}{}
		}()
	}
	for range g.servers {
		<-done
	}
}

// closeAll closes every server at once, for a failed start.
func (g *group) closeAll() {
	for _, s := range g.servers {
		_ = s.srv.Close()
	}
}

// removeAddrFiles removes the address files, so that they name a live
// listener only while egressd runs.
func (g *group) removeAddrFiles() {
	for _, f := range g.files {
		_ = os.Remove(f)
	}
}
