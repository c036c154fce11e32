package hostcmd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/audit"
	"payhsm/ops"
)

// Config tunes the host port.
type Config struct {
	HeaderLength   int           // m: bytes of message header echoed unchanged (default 4)
	MaxConnections int           // default 256; at the limit the longest-idle connection is evicted (limits.go)
	IdleTimeout    time.Duration // default 5 min: a connection silent this long is closed
	FrameTimeout   time.Duration // default 10 s: a started frame must complete within it
	Firmware       string        // 9 characters reported by NC/NO
	// Node is the fleet node's name (docs/fleet.md), which NO mode 02
	// reports; "" outside a fleet.
	Node       string
	MaxMessage int // default and ceiling MaxMessage: longer frames close the connection
	// MaxConnectionsPerAddress bounds the connections from one source
	// address (IPv6: one /64); at the bound, that address's longest-idle
	// connection is evicted. Default (0): min(64, MaxConnections).
	MaxConnectionsPerAddress int

	// TLS, when set, makes the port TLS-only (payShield 10K's TLS host port).
	// For mutual TLS set ClientAuth to tls.RequireAndVerifyClientCert and
	// ClientCAs; AllowedClients then further restricts the verified client
	// certificates to those whose subject common name or SHA-256 fingerprint
	// (64 hex digits of the DER certificate) is listed. Empty: any verified
	// client.
	TLS            *tls.Config
	AllowedClients []string

	// EventLoops is how many event loops serve plain-TCP connections
	// (Linux; see loop_linux.go). 0: one per two CPUs, at least one.
	// Negative: a goroutine per connection, as TLS connections always have.
	EventLoops int
	// Driver chooses how plain-TCP connections are served (Linux):
	// DriverEpoll (""), DriverIOUring (falls back to epoll when no ring can
	// be set up) or DriverGoroutine (as EventLoops < 0).
	Driver string
	// uringBufs buffers of uringBufSize bytes, when set (tests), make the
	// io_uring driver's provided-buffer ring (a power of two of them).
	uringBufs, uringBufSize int

	// Authorizer, when set, authorizes every command (authz.go): a
	// connection's principal is the one its mTLS client certificate maps to,
	// else Principal, the listener's (may be "": then every command that
	// needs an action is refused).
	Authorizer *access.Authorizer
	Principal  string
}

// The host port's drivers (Config.Driver).
const (
	DriverEpoll     = "epoll"
	DriverIOUring   = "io_uring"
	DriverGoroutine = "goroutine"
)

// Server serves host commands.
type Server struct {
	ops  *ops.Service
	cfg  Config
	log  *zap.Logger
	mu   sync.Mutex
	ln   net.Listener
	conn map[net.Conn]struct{}
	wg   sync.WaitGroup

	limits *limits
	done   chan struct{}
	stop   sync.Once

	authz map[string]hostAuthz // compiled hostActions
	obs   Observer             // nil: none (observe.go)

	loops []loopDriver // plain-TCP event loops (Linux); nil: a goroutine per connection
	next  int          // the loop the next connection goes to (Serve's goroutine only)

	trail        *audit.Trail // denials (see SetAudit); nil: none
	dataTrail    *audit.Trail // data events; nil unless the account opted in
	auditAccount string
}

// NewServer returns a host-command server.
func NewServer(svc *ops.Service, cfg Config, log *zap.Logger) *Server {
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 256
	}
	if cfg.MaxConnectionsPerAddress <= 0 {
		cfg.MaxConnectionsPerAddress = min(64, cfg.MaxConnections)
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
	return &Server{ops: svc, cfg: cfg, log: log, limits: newLimits(cfg.MaxConnections, cfg.MaxConnectionsPerAddress),
		conn: map[net.Conn]struct{}{}, done: make(chan struct{}), authz: compileHostActions()}
}

// Serve accepts connections on ln until Shutdown.
// A Serve that starts after Shutdown closes ln and returns at once (as
// net/http's does), so that a shutdown racing the start never leaves it
// accepting.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	default:
	}
	s.ln = ln
	s.startLoops()
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
		s.mu.Lock()
		s.wg.Add(1)
		s.mu.Unlock()
		t := &tracked{src: sourceKey(c.RemoteAddr()), fd: -1}
		if s.adopt(c, t) {
			continue
		}
		t.evict = func() {
			// The session sees the flag before its next read, or the
			// deadline wakes the read it is blocked in; a command being
			// served is answered first.
			_ = c.SetReadDeadline(time.Now())
		}
		s.admit(t)
		s.mu.Lock()
		s.conn[c] = struct{}{}
		s.mu.Unlock()
		go s.handle(c, t)
	}
}

// admit counts a new connection against the limits, evicting another when
// one is reached, and summarises evictions in the log.
func (s *Server) admit(t *tracked) {
	now := time.Now()
	before := s.limits.evictedAddr.Load() + s.limits.evictedAll.Load()
	s.limits.admit(t, now)
	if s.limits.evictedAddr.Load()+s.limits.evictedAll.Load() != before {
		s.limits.summarise(s.log, now)
	}
}

// refuse counts a connection closed without being served.
func (s *Server) refuse() {
	s.limits.refused.Add(1)
	s.limits.summarise(s.log, time.Now())
}

// Shutdown stops accepting, lets in-flight commands finish and closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop.Do(func() { close(s.done) })
	s.mu.Lock()
	if s.ln != nil {
		// Serve sees the closed listener and returns. Closed already (by the
		// caller) is fine; any other failure leaves nothing to do but report.
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Warn("host port: closing the listener", zap.Error(err))
		}
	}
	for c := range s.conn {
		// wake readers blocked between commands; a command being served finishes first
		_ = c.SetReadDeadline(time.Now())
	}
	s.wakeLoops()
	s.mu.Unlock()
	ch := make(chan struct{})
	go func() { s.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conn {
			_ = c.Close() // out of time: torn down, nothing to do if the close fails
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) handle(raw net.Conn, t *tracked) {
	c := raw
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("host connection handler panicked", zap.Any("panic", fmt.Sprint(r)))
		}
		_ = raw.Close() // torn down: the session has ended, nothing to do if the close fails
		s.mu.Lock()
		delete(s.conn, raw)
		s.mu.Unlock()
		s.limits.release(t)
		s.wg.Done()
	}()
	client := ""
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
			s.denyClient(tc.ConnectionState(), c.RemoteAddr().String())
			return
		}
		c = tc
		client = clientName(tc.ConnectionState())
	}
	sn := &session{s: s, c: c, t: t, br: bufio.NewReaderSize(c, ioBuffer), bw: bufio.NewWriterSize(c, ioBuffer), x: s.newCall()}
	var cert *x509.Certificate
	if tc, ok := c.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			cert = st.PeerCertificates[0]
		}
	}
	s.bind(sn.x, cert, raw.RemoteAddr().String(), c != raw)
	sn.x.identify(raw.RemoteAddr().String(), client)
	if err := sn.serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errClosing) {
		s.log.Debug("closing host connection", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
	}
}

// ioBuffer is the size of a connection's read and write buffers. A frame
// that fits the read buffer is served in place, and one read system call
// takes every pipelined request the kernel holds, up to this size; the
// responses to them go out in one write.
const ioBuffer = 16 << 10

// maxDeadlineSlack bounds how far a deadline may lag: it is re-armed only
// when it would move by more than min(maxDeadlineSlack, timeout/8), so a busy
// connection does not reprogram its poller timers on every request. The idle
// and frame timeouts are honoured to within that slack.
const maxDeadlineSlack = time.Second

var errClosing = errors.New("hostcmd: connection closing (server shutdown or eviction)")

// session is one connection's request loop and its reusable buffers: serving
// a request allocates nothing here beyond what its command needs.
type session struct {
	s      *Server
	c      net.Conn
	t      *tracked // its place in the connection limits (nil in tests that build sessions)
	br     *bufio.Reader
	bw     *bufio.Writer
	x      *call
	out    []byte // the response frame being built
	big    []byte // a frame too long for br's buffer
	rd, wd deadline
}

// deadline is a read or write deadline armed lazily.
type deadline struct {
	at    time.Time // the deadline last armed
	armed time.Duration
}

// arm makes the deadline now+d, unless the one armed for d is within slack.
func (dl *deadline) arm(set func(time.Time) error, now time.Time, d time.Duration) {
	want := now.Add(d)
	if dl.armed == d && want.Sub(dl.at) <= min(maxDeadlineSlack, d/8) {
		return
	}
	dl.at, dl.armed = want, d
	_ = set(want)
}

// closing reports whether the session must end before its next read: the
// server is shutting down, or the connection was evicted.
func (sn *session) closing() bool {
	if sn.t.isEvicted() {
		return true
	}
	select {
	case <-sn.s.done:
		return true
	default:
		return false
	}
}

// serve answers requests in order until the connection fails or the server
// shuts down. Requests already received are answered before it stops.
func (sn *session) serve() error {
	defer func() {
		if sn.bw.Buffered() > 0 {
			sn.wd.arm(sn.c.SetWriteDeadline, time.Now(), sn.s.cfg.FrameTimeout)
			_ = sn.bw.Flush()
		}
	}()
	for {
		msg, n, err := sn.next()
		if err != nil {
			return err
		}
		sn.out = append(sn.out[:0], 0, 0)
		sn.out = sn.s.dispatch(sn.x, sn.out, msg)
		if err := putAnswerLength(sn.out, 0); err != nil {
			return err
		}
		if n > 0 {
			if _, err := sn.br.Discard(n); err != nil {
				return err
			}
		}
		if sn.bw.Available() < len(sn.out) {
			sn.wd.arm(sn.c.SetWriteDeadline, time.Now(), sn.s.cfg.FrameTimeout)
		}
		if _, err := sn.bw.Write(sn.out); err != nil {
			return err
		}
	}
}

// next returns the next request message and how many buffered bytes to
// discard once it is served (0 when the message was copied out). Before it
// would block on the network it flushes the pending responses; it waits up
// to IdleTimeout for a frame to start and FrameTimeout for it to complete.
func (sn *session) next() ([]byte, int, error) {
	s, br := sn.s, sn.br
	if br.Buffered() == 0 {
		if sn.bw.Buffered() > 0 {
			sn.wd.arm(sn.c.SetWriteDeadline, time.Now(), s.cfg.FrameTimeout)
			if err := sn.bw.Flush(); err != nil {
				return nil, 0, err
			}
		}
		// Arm, then check for shutdown: a Shutdown after the check moves
		// the deadline to now and wakes the Peek.
		sn.rd.arm(sn.c.SetReadDeadline, time.Now(), s.cfg.IdleTimeout)
		if sn.closing() {
			return nil, 0, errClosing
		}
		if _, err := br.Peek(1); err != nil {
			return nil, 0, err
		}
		sn.t.touch(time.Now())
	}
	if br.Buffered() < 2 {
		if err := sn.armFrame(); err != nil {
			return nil, 0, err
		}
	}
	lb, err := br.Peek(2)
	if err != nil {
		return nil, 0, noEOF(err)
	}
	n := int(binary.BigEndian.Uint16(lb))
	if n == 0 {
		return nil, 0, fmt.Errorf("%w: zero length", ErrFrame)
	}
	if n > s.cfg.MaxMessage {
		return nil, 0, fmt.Errorf("%w: length %d exceeds %d", ErrFrame, n, s.cfg.MaxMessage)
	}
	if br.Buffered() < 2+n {
		if err := sn.armFrame(); err != nil {
			return nil, 0, err
		}
	}
	if 2+n <= br.Size() {
		f, err := br.Peek(2 + n)
		if err != nil {
			return nil, 0, noEOF(err)
		}
		return f[2:], 2 + n, nil
	}
	if cap(sn.big) < 2+n {
		sn.big = make([]byte, 2+n)
	}
	sn.big = sn.big[:2+n]
	if _, err := io.ReadFull(br, sn.big); err != nil {
		return nil, 0, noEOF(err)
	}
	return sn.big[2:], 0, nil
}

// armFrame arms the frame deadline before a read that completes a started
// frame. During shutdown a frame not yet received is not waited for.
func (sn *session) armFrame() error {
	sn.rd.arm(sn.c.SetReadDeadline, time.Now(), sn.s.cfg.FrameTimeout)
	if sn.closing() {
		return errClosing
	}
	return nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
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

// clientName is a verified client certificate's subject common name, or
// its SHA-256 fingerprint when it has none ("" without a client certificate).
func clientName(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	leaf := st.PeerCertificates[0]
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName
	}
	sum := sha256.Sum256(leaf.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
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
