//go:build !linux

package awsapi

import "net"

// httpLoop: event loops are Linux's (httploop_linux.go); elsewhere every
// connection has a goroutine of its own.
type httpLoop struct{}

func (s *HTTPServer) startLoops(int)      {}
func (s *HTTPServer) adopt(net.Conn) bool { return false }
func (s *HTTPServer) wakeLoops()          {}
