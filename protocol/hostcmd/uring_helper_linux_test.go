//go:build linux

package hostcmd

// uringUsable reports why the io_uring driver cannot run here (nil: it can).
func uringUsable() error { return uringAvailable() }

// loopIsUring reports whether srv's first loop is the io_uring driver.
func loopIsUring(srv *Server) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	_, ok := srv.loops[0].(*uringLoop)
	return ok
}
