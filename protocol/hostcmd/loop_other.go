//go:build !linux

package hostcmd

import "net"

// eventLoop exists on Linux only; elsewhere every connection has a goroutine.
type eventLoop struct{}

func (s *Server) startLoops()                   {}
func (s *Server) adopt(net.Conn, *tracked) bool { return false }
func (s *Server) wakeLoops()                    {}
