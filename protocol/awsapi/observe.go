package awsapi

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"payhsm/fault"
)

// Observer is told about every request once it is answered (the daemon's
// metrics: metrics.HTTP). operation is the AWS operation name ("" when the
// request named none this server has); kind is the error's fault kind and
// code its AWS exception name, both "" for a success. It must be cheap and
// safe for concurrent use: it runs on every request.
type Observer interface {
	ObserveRequest(operation, kind, code string, took time.Duration)
}

// SetObserver sets the observer; call it before serving.
func (s *Server) SetObserver(o Observer) { s.obs = o }

// Operations lists the operation names this server answers, both planes.
func (s *Server) Operations() []string {
	out := make([]string, 0, len(s.control)+len(s.routes))
	for name := range s.control {
		out = append(out, name)
	}
	for _, rt := range s.routes {
		out = append(out, rt.name)
	}
	sort.Strings(out)
	return out
}

// request is what ServeHTTP learns of a request for its log line.
type request struct {
	accessKey string // the SigV4 access key id that signed it, once verified
}

// outcome is how a failed request was answered: its fault kind (for a
// protocol-level error, the kind its status stands for: an unknown path is
// NotFound, not Internal), AWS exception name and HTTP status.
func outcome(pl plane, err error) (kind fault.Kind, code string, status int) {
	var pe *protocolError
	if errors.As(err, &pe) {
		switch pe.status {
		case http.StatusNotFound:
			kind = fault.NotFound
		case http.StatusForbidden:
			kind = fault.AccessDenied
		case http.StatusBadRequest:
			kind = fault.Validation
		default:
			kind = fault.Internal
		}
		return kind, pe.name, pe.status
	}
	kind = fault.KindOf(err)
	if pl == dataPlane {
		code, status = dataException(kind)
	} else {
		code, status = controlException(kind)
	}
	return kind, code, status
}

// logLevel is the level of a request's log line: a success and a failed
// verification (an answer, not a failure) at debug, a client's mistake at
// info, an unavailable service at warn, an internal failure at error. The
// host port uses the same levels.
func logLevel(failed bool, kind fault.Kind) zapcore.Level {
	switch {
	case !failed || kind == fault.VerificationFailed:
		return zap.DebugLevel
	case kind == fault.Internal:
		return zap.ErrorLevel
	case kind == fault.Unavailable:
		return zap.WarnLevel
	}
	return zap.InfoLevel
}

// finish logs the request, once, and tells the observer. The fields are the
// host port's: requestId, operation, code, kind, client (the access key id),
// remote, reason, took; plus status.
func (s *Server) finish(r *http.Request, reqID string, rq *request, pl plane, op string, err error, start time.Time) {
	took := time.Since(start)
	var kind fault.Kind
	var code string
	status := http.StatusOK
	if err != nil {
		kind, code, status = outcome(pl, err)
	}
	if s.obs != nil {
		k := ""
		if err != nil {
			k = kind.String()
		}
		s.obs.ObserveRequest(op, k, code, took)
	}
	msg := "request"
	if err != nil {
		msg = "request failed"
	}
	ce := s.log.Check(logLevel(err != nil, kind), msg)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 9)
	fields = append(fields, zap.String("requestId", reqID), zap.String("operation", op), zap.Int("status", status))
	if err != nil {
		fields = append(fields, zap.String("code", code), zap.String("kind", kind.String()))
	}
	if rq.accessKey != "" {
		fields = append(fields, zap.String("client", rq.accessKey))
	}
	fields = append(fields, zap.String("remote", r.RemoteAddr))
	if err != nil {
		fields = append(fields, zap.String("reason", err.Error()))
	}
	ce.Write(append(fields, zap.Duration("took", took))...)
}
