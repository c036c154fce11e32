package awsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/fault"
	"payhsm/internal/jsontext"
	"payhsm/ops"
	"payhsm/protocol/awsapi/sigv4"
)

// SetAudit makes the server record its calls in trail: every control-plane
// call of an authenticated principal, synced before its answer (a call is
// refused while the trail cannot write, and one whose record fails is
// answered ServiceUnavailableException); every request that fails SigV4, as
// a denial; and, when data is true (the account opted in to data events),
// every data-plane call, queued and never waited for. account is written
// in each event. Call it before serving.
func (s *Server) SetAudit(trail *audit.Trail, account string, data bool) {
	s.audit, s.auditAccount, s.auditData = trail, account, data
}

// AuditOutbox keeps track of the entries CreateKey stages
// (SetAuditOutbox); the daemon's.
type AuditOutbox interface {
	// Staging registers the entry of request id ref, whose key is about to
	// be stored, and returns the entry's time.
	Staging(ref string) time.Time
	// Abandoned says that ref's key was not stored.
	Abandoned(ref string)
}

// SetAuditOutbox makes CreateKey stage its audit entry: the key's record
// carries who created it (keystore.Key.CreatedBy: principal, source,
// request id), the entry is appended to the trail once the key has
// committed, without a sync of its own, and a start after a crash appends
// again what the trail's files lack (StagedCreateKey, audit.Trail.Adopt).
// The call waits for one fsync instead of two, and a crash cannot leave a
// key without its entry. The daemon turns it on for a key store with one
// writer (Pebble). Call it before serving.
func (s *Server) SetAuditOutbox(o AuditOutbox) { s.auditOutbox = o }

// auditCallKey finds a control-plane call's record in its context when it
// may stage its entry (auditOutbox).
type auditCallKey struct{}

// outboxFor returns CreateKey's ops.CreateKeyInput.AuditOutbox for the call
// of ctx: nil unless the server stages entries.
func outboxFor(ctx context.Context, in any) func(string) (string, error) {
	a, _ := ctx.Value(auditCallKey{}).(*auditCall)
	if a == nil {
		return nil
	}
	return func(keyARN string) (string, error) {
		ev := a.event("CreateKey")
		by, ok := createdBy(ev.Principal, ev.Source, ev.RequestID)
		if !ok {
			return "", nil // recorded after the commit, as other calls are
		}
		ev.Keys = append(appendKeys(nil, in), keyARN)
		at := a.s.auditOutbox.Staging(ev.RequestID)
		st, err := audit.NewStaged(ev, at)
		if err != nil {
			a.s.auditOutbox.Abandoned(ev.RequestID)
			return "", err
		}
		a.staged = st
		return by, nil
	}
}

// createdBy is a key's CreatedBy: principal, source and request id,
// separated by spaces, each jsontext.Plain, without a space, at most 256
// bytes; ok is false when a part is not.
func createdBy(principal, source, requestID string) (string, bool) {
	for _, p := range [...]string{principal, source, requestID} {
		if p == "" || len(p) > 256 || !jsontext.Plain(p) || strings.IndexByte(p, ' ') >= 0 {
			return "", false
		}
	}
	return principal + " " + source + " " + requestID, true
}

// StagedCreateKey is the entry CreateKey staged for the key keyARN, created
// at created with CreatedBy by, for audit.Trail.Adopt: the entry the call
// appended, or would have appended had the process not died first.
func StagedCreateKey(account, keyARN, by string, created time.Time) (*audit.Staged, error) {
	parts := strings.Split(by, " ")
	if len(parts) != 3 {
		return nil, fmt.Errorf("key %s: CreatedBy %q is not principal, source and request id", keyARN, by)
	}
	return audit.NewStaged(audit.Event{Protocol: "aws", Operation: "CreateKey", Principal: parts[0], Source: parts[1],
		RequestID: parts[2], Account: account, Keys: []string{keyARN}, Outcome: audit.OK}, created)
}

// auditCall is one call's audit record in the making; nil when the call is
// not recorded (no trail, or a data-plane call of an account that did not
// opt in): the hot path then pays one nil test.
type auditCall struct {
	s         *Server
	pl        plane
	r         *http.Request
	w         http.ResponseWriter
	principal string
	finished  bool
	// staged is the entry the call's key is stored with (outboxFor).
	staged *audit.Staged
}

// startAudit returns the call's record, or nil.
func (s *Server) startAudit(pl plane, w http.ResponseWriter, r *http.Request, principal string) *auditCall {
	if s.audit == nil || (pl == dataPlane && !s.auditData) {
		return nil
	}
	return &auditCall{s: s, pl: pl, r: r, w: w, principal: principal}
}

// errAuditUnavailable answers a control-plane call the trail cannot record.
func errAuditUnavailable(err error) error {
	return fault.Wrap(fault.Unavailable, "the audit trail cannot record this call, so it was not carried out; try again later", err)
}

// ready refuses a control-plane call before it runs when the trail cannot
// write.
func (a *auditCall) ready() error {
	if a == nil || a.pl != controlPlane {
		return nil
	}
	if err := a.s.audit.Ready(); err != nil {
		a.finished = true // a refusal the trail cannot take either
		return errAuditUnavailable(err)
	}
	return nil
}

// done records the call once: its operation, principal, the keys it names
// (from in and, for a success, out) and outcome. A control-plane record
// that cannot be written turns a success into an error; a data-plane one
// is queued.
func (a *auditCall) done(name string, in, out any, callErr error) error {
	if a == nil || a.finished {
		return nil
	}
	a.finished = true
	if a.staged != nil {
		if callErr == nil { // durable with the key: appended, not waited for
			a.s.audit.AppendStaged(a.staged)
			return nil
		}
		a.s.auditOutbox.Abandoned(a.staged.RequestID())
	}
	ev := a.event(name)
	ev.Keys = appendKeys(appendKeys(nil, in), out)
	if callErr != nil {
		ev.Outcome, ev.Error = outcomeOf(a.pl, callErr)
	}
	if a.pl == dataPlane {
		ev.PAN = panOf(in)
		a.s.audit.Data(ev)
		return nil
	}
	if err := a.s.audit.Record(audit.KindControl, ev); err != nil {
		a.s.log.Error("audit trail: a control-plane call could not be recorded", zap.String("requestId", ev.RequestID),
			zap.String("operation", name), zap.Error(err))
		if callErr == nil {
			return fault.Wrap(fault.Unavailable, "the call was carried out but could not be recorded in the audit trail", err)
		}
	}
	return nil
}

// event is the call's event before its keys and outcome: OK.
func (a *auditCall) event(name string) audit.Event {
	ev := audit.Event{Protocol: "aws", Operation: name, Principal: a.principal, Source: a.r.RemoteAddr,
		RequestID: a.w.Header().Get("X-Amzn-RequestId"), Account: a.s.auditAccount, Outcome: audit.OK}
	if ev.Operation == "" {
		ev.Operation = "unknown"
	}
	return ev
}

// outcomeOf classifies a failed call: the AWS exception name, and failed
// (the service could not answer) or refused (the request was answered with
// an error).
func outcomeOf(pl plane, err error) (audit.Outcome, string) {
	var pe *protocolError
	if errors.As(err, &pe) {
		return audit.Refused, pe.name
	}
	f := fault.As(err)
	name, _ := controlException(f.Kind)
	if pl == dataPlane {
		name, _ = dataException(f.Kind)
	}
	if f.Kind == fault.Internal || f.Kind == fault.Unavailable {
		return audit.Failed, name
	}
	return audit.Refused, name
}

// deny records a request that failed SigV4 authentication.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, pl plane, principal string, err error) {
	if s.audit == nil {
		return
	}
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), controlTargetPrefix)
	if pl == dataPlane {
		action = r.Method + " " + r.URL.EscapedPath()
	}
	reason := "authentication failed"
	for _, e := range []error{sigv4.ErrMissingAuth, sigv4.ErrUnknownAccessKey, sigv4.ErrExpired, sigv4.ErrNotYetValid,
		sigv4.ErrSignatureMismatch, sigv4.ErrPayloadHash, sigv4.ErrScope, sigv4.ErrUnsignedHeader, sigv4.ErrMalformedAuth, sigv4.ErrUnsupported} {
		if errors.Is(err, e) {
			reason = strings.TrimPrefix(e.Error(), "sigv4: ")
			break
		}
	}
	if len(action) > 256 {
		action = action[:256]
	}
	if principal == "" { // the access key id the request claims, if it names one
		if a, perr := sigv4.ParseAuthorization(r.Header.Get("Authorization")); perr == nil && len(a.AccessKeyID) <= 128 {
			principal = a.AccessKeyID
		}
	}
	if derr := s.audit.Deny(audit.Denial{Protocol: "aws", Principal: principal, Source: r.RemoteAddr,
		RequestID: w.Header().Get("X-Amzn-RequestId"), Action: action, Reason: reason}); derr != nil {
		s.log.Error("audit trail: a denial could not be recorded", zap.Error(derr))
	}
}

// The members an event names keys by: every string member of a request or
// response, at any depth of nested structures (not in lists), whose name is
// one of these or ends in KeyIdentifier or KeyArn. PANs: PrimaryAccountNumber.
var keyMembers = map[string]bool{"ResourceArn": true, "AliasName": true}

// memberPaths are the field index paths of a type's key and PAN members.
type memberPaths struct {
	keys [][]int
	pan  [][]int
}

var pathCache sync.Map // reflect.Type -> *memberPaths

func pathsOf(t reflect.Type) *memberPaths {
	if p, ok := pathCache.Load(t); ok {
		return p.(*memberPaths)
	}
	p := &memberPaths{}
	var walk func(t reflect.Type, prefix []int, depth int)
	walk = func(t reflect.Type, prefix []int, depth int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 4 {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			path := append(append([]int(nil), prefix...), i)
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.String && f.Name == "PrimaryAccountNumber":
				p.pan = append(p.pan, path)
			case ft.Kind() == reflect.String && (keyMembers[f.Name] || strings.HasSuffix(f.Name, "KeyIdentifier") || strings.HasSuffix(f.Name, "KeyArn")):
				p.keys = append(p.keys, path)
			case ft.Kind() == reflect.Struct:
				walk(ft, path, depth+1)
			}
		}
	}
	walk(t, nil, 0)
	actual, _ := pathCache.LoadOrStore(t, p)
	return actual.(*memberPaths)
}

// field follows path from v (through pointers); ok is false at a nil
// pointer or a non-string.
func field(v reflect.Value, path []int) (string, bool) {
	for _, i := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return "", false
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.String {
		return "", false
	}
	return v.String(), true
}

// appendKeys appends the keys x names that dst does not hold yet.
func appendKeys(dst []string, x any) []string {
	if x == nil {
		return dst
	}
	v := reflect.ValueOf(x)
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return dst
	}
	for _, path := range pathsOf(v.Type()).keys {
		if s, ok := field(v, path); ok && s != "" && !contains(dst, s) {
			if len(s) > 256 {
				s = s[:256]
			}
			dst = append(dst, s)
		}
	}
	return dst
}

// panOf is the first PAN x names.
func panOf(x any) string {
	if x == nil {
		return ""
	}
	v := reflect.ValueOf(x)
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return ""
	}
	for _, path := range pathsOf(v.Type()).pan {
		if s, ok := field(v, path); ok && s != "" {
			return s
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// caller is the request's caller for the operations layer (ops.Caller): the
// principal's ARN (the access key id akid when no authorizer knows it) and
// the request id and peer address of the call's own audit entry.
func (s *Server) caller(r *http.Request, w http.ResponseWriter, akid string) ops.Caller {
	c := ops.Caller{Protocol: "aws", Principal: akid, Source: r.RemoteAddr, RequestID: w.Header().Get("X-Amzn-RequestId")}
	if s.az != nil {
		if p := s.az.ByAccessKey(akid); p != nil && p.ARN() != "" {
			c.Principal = p.ARN()
		}
	}
	return c
}
