package hostcmd

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"payhsm/fault"
)

// Observer is told about every host command once it is answered (the
// daemon's metrics: metrics.Host). command is the command code as received;
// kind is the error's fault kind and code its payShield error code, both ""
// for a success ("00"). It must be cheap and safe for concurrent use: it
// runs on every command.
type Observer interface {
	ObserveCommand(command [2]byte, kind, code string, took time.Duration)
}

// SetObserver sets the observer; call it before Serve.
func (s *Server) SetObserver(o Observer) { s.obs = o }

// Connections is the number of open host connections.
func (s *Server) Connections() int { return s.limits.open() }

// result is how a command was answered.
type result struct {
	command [2]byte // zero when the frame held none
	code    string  // the error code answered ("00": success)
	err     error   // why not "00"
}

var errUnknownCommand = errors.New("hostcmd: command not supported (not in the command table)")

// errNotAuthorized is the logged reason of a command its principal may not
// run (the decision itself is logged and audited by the authorizer).
var errNotAuthorized = errors.New("hostcmd: not authorized for the connection's principal")

// connections numbers the connections of the process, for request ids.
var connections atomic.Uint64

// identify records who is on the connection x serves: remote is the peer's
// address, client its authenticated identity (the client certificate's
// common name on a mutual-TLS port; "" otherwise). Called once, before
// the connection's first command.
func (x *call) identify(remote, client string) {
	x.remote, x.client, x.conn = remote, client, connections.Add(1)
}

// requestID names a command in the logs: host-<connection>-<command number
// on the connection>. The host protocol carries no id of its own; the
// client's message header is logged beside it.
func (x *call) requestID() string {
	b := make([]byte, 0, 32)
	b = append(b, "host-"...)
	b = strconv.AppendUint(b, x.conn, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, x.seq, 10)
	return string(b)
}

// finish logs the command, once, and tells the observer. The levels are the
// HTTP API's: a success and a failed verification (an answer, not a
// failure) at debug, a client's mistake at info, an unavailable service at
// warn, an internal failure at error. The fields are the HTTP API's too:
// requestId, operation (the command code), code, kind, client, remote,
// reason, took; plus the client's message header. Neither the request nor
// the response is logged: they hold PIN blocks, PANs and keys.
func (s *Server) finish(x *call, res result, start time.Time) {
	x.seq++
	failed := res.code != codeOK
	var kind fault.Kind
	if failed {
		kind = resultKind(res.err)
	}
	level, msg := zapcore.DebugLevel, "host command"
	if failed {
		msg = "host command failed"
		switch kind {
		case fault.Internal:
			level = zapcore.ErrorLevel
		case fault.Unavailable:
			level = zapcore.WarnLevel
		case fault.VerificationFailed:
		default:
			level = zapcore.InfoLevel
		}
	}
	ce := s.log.Check(level, msg)
	if ce == nil && s.obs == nil {
		return
	}
	took := time.Since(start)
	if s.obs != nil {
		k, code := "", ""
		if failed {
			k, code = kind.String(), res.code
		}
		s.obs.ObserveCommand(res.command, k, code, took)
	}
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 9)
	fields = append(fields, zap.String("requestId", x.requestID()), zap.String("operation", string(res.command[:])))
	if failed {
		fields = append(fields, zap.String("code", res.code), zap.String("kind", kind.String()))
	}
	if x.client != "" {
		fields = append(fields, zap.String("client", x.client))
	}
	fields = append(fields, zap.String("remote", x.remote))
	if failed && res.err != nil {
		fields = append(fields, zap.String("reason", res.err.Error()))
	}
	ce.Write(append(fields, zap.Duration("took", took))...)
}

// resultKind is the fault kind of a command's error: a malformed frame or
// field, or a command not in the table, is the client's (Validation).
func resultKind(err error) fault.Kind {
	var ce *codeError
	if err == nil || errors.As(err, &ce) || errors.Is(err, ErrFrame) || errors.Is(err, errUnknownCommand) {
		return fault.Validation
	}
	return fault.KindOf(err)
}
