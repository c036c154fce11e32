//go:build !linux

package hostcmd

import "net"

// Event loops exist on Linux only; elsewhere every connection has a goroutine.
type loopDriver interface{}

func (s *Server) startLoops()                   {}
func (s *Server) adopt(net.Conn, *tracked) bool { return false }
func (s *Server) wakeLoops()                    {}
