package hostcmd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/ops"
)

// Config tunes the host port.
type Config struct {
	HeaderLength   int           // m: bytes of message header echoed unchanged (default 4)
	MaxConnections int           // default 256
	IdleTimeout    time.Duration // default 5 min: a connection silent this long is closed
	FrameTimeout   time.Duration // default 10 s: a started frame must complete within it
	Firmware       string        // 9 characters reported by NC/NO
	MaxMessage     int           // default and ceiling MaxMessage: longer frames close the connection

	// TLS, when set, makes the port TLS-only (payShield 10K's TLS host port).
	// For mutual TLS set ClientAuth to tls.RequireAndVerifyClientCert and
	// ClientCAs; AllowedClients then further restricts the verified client
	// certificates to those whose subject common name or SHA-256 fingerprint
	// (64 hex digits of the DER certificate) is listed. Empty: any verified
	// client.
	TLS            *tls.Config
	AllowedClients []string
}

// Server serves host commands.
type Server struct {
	ops  *ops.Service
	cfg  Config
	log  *zap.Logger
	sem  chan struct{}
	mu   sync.Mutex
	ln   net.Listener
	conn map[net.Conn]struct{}
	wg   sync.WaitGroup
	done chan struct{}
	stop sync.Once
}

// NewServer returns a host-command server.
func NewServer(svc *ops.Service, cfg Config, log *zap.Logger) *Server {
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 256
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.FrameTimeout == 0 {
		cfg.FrameTimeout = 10 * time.Second
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "0001-0001"
	}
	if cfg.MaxMessage <= 0 || cfg.MaxMessage > MaxMessage {
		cfg.MaxMessage = MaxMessage
	}
	return &Server{ops: svc, cfg: cfg, log: log, sem: make(chan struct{}, cfg.MaxConnections),
		conn: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.log.Warn("connection limit reached; refusing", zap.String("remote", c.RemoteAddr().String()))
			c.Close()
			continue
		}
		s.mu.Lock()
		s.conn[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// Shutdown stops accepting, lets in-flight commands finish and closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop.Do(func() { close(s.done) })
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conn {
		// wake readers blocked between commands; a command being served finishes first
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	ch := make(chan struct{})
	go func() { s.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conn {
			c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) handle(raw net.Conn) {
	c := raw
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("host connection handler panicked", zap.Any("panic", fmt.Sprint(r)))
		}
		raw.Close()
		s.mu.Lock()
		delete(s.conn, raw)
		s.mu.Unlock()
		<-s.sem
		s.wg.Done()
	}()
	if s.cfg.TLS != nil {
		tc := tls.Server(c, s.cfg.TLS)
		_ = tc.SetDeadline(time.Now().Add(s.cfg.FrameTimeout))
		if err := tc.Handshake(); err != nil {
			s.log.Info("host TLS handshake failed", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			return
		}
		_ = tc.SetDeadline(time.Time{})
		if !s.allowed(tc.ConnectionState()) {
			s.log.Warn("host client certificate not in the allow-list", zap.String("remote", c.RemoteAddr().String()))
			return
		}
		c = tc
	}
	br := bufio.NewReaderSize(c, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	for {
		// Wait for the next frame up to the idle timeout; once it starts, it
		// must complete in FrameTimeout. The deadline is set before checking
		// done, so a Shutdown after the check still wakes the Peek.
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		select {
		case <-s.done:
			_ = bw.Flush()
			return
		default:
		}
		if _, err := br.Peek(1); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.FrameTimeout))
		msg, err := ReadFrame(br, s.cfg.MaxMessage)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Debug("closing host connection", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			}
			return
		}
		resp := s.dispatch(msg)
		out := AppendFrame(nil, resp)
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.FrameTimeout))
		if _, err := bw.Write(out); err != nil {
			return
		}
		// Flush when no further pipelined request is already buffered.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

// allowed applies the client-certificate allow-list.
func (s *Server) allowed(st tls.ConnectionState) bool {
	if len(s.cfg.AllowedClients) == 0 {
		return true
	}
	if len(st.PeerCertificates) == 0 {
		return false
	}
	leaf := st.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	for _, a := range s.cfg.AllowedClients {
		if a == leaf.Subject.CommonName || len(a) == 64 && equalFold(a, fp) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'F' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
