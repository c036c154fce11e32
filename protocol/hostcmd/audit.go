package hostcmd

import (
	"crypto/tls"
	"reflect"
	"sync"

	"go.uber.org/zap"

	"payhsm/audit"
)

// SetAudit makes the server record in trail the clients it refuses (a
// certificate outside the allow-list) and, when data is true (the account
// opted in to data events), every command it answers: queued, never waited
// for. Call it before serving.
func (s *Server) SetAudit(trail *audit.Trail, account string, data bool) {
	s.trail, s.auditAccount = trail, account
	if data {
		s.dataTrail = trail
	}
}

// peerName is a TLS client's certificate common name ("" without one).
func peerName(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// denyClient records a client refused by the allow-list.
func (s *Server) denyClient(st tls.ConnectionState, remote string) {
	if s.trail == nil {
		return
	}
	if err := s.trail.Deny(audit.Denial{Protocol: "host", Principal: peerName(st), Source: remote, Action: "connect",
		Reason: "client certificate not in host.allowedClients"}); err != nil {
		s.log.Error("audit trail: a denial could not be recorded", zap.Error(err))
	}
}

// auditCommand queues a data event for one answered command. The caller
// has checked s.dataTrail != nil: with data events off, this is never
// reached.
func (s *Server) auditCommand(x *call, code [2]byte, cmd command, errCode string) {
	ev := audit.Event{Protocol: "host", Operation: string(code[:]), Principal: x.principal, Source: x.remote,
		Account: s.auditAccount, Profile: x.profile, Outcome: audit.OK}
	if errCode != codeOK {
		ev.Outcome, ev.Error = audit.Refused, errCode
	}
	if cmd != nil {
		ev.Keys, ev.PAN = commandFields(cmd)
	} else {
		ev.Profile = "" // not decoded: no profile was selected
	}
	s.dataTrail.Data(ev)
}

// The fields of a decoded command an event names: its key fields (a stored
// key by its reference, a key block by its 16-character X9.143 header,
// which holds no key material) and the PAN, from a string field named pan.
// Found by reflection once per command type.
type commandPaths struct {
	keys []int
	pan  int // -1: none
}

var commandCache sync.Map // reflect.Type -> *commandPaths

var keyRefType = reflect.TypeFor[keyRef]()

func commandFields(cmd command) (keys []string, pan string) {
	v := reflect.ValueOf(cmd)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, ""
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil, ""
	}
	p := pathsOfCommand(v.Type())
	for _, i := range p.keys {
		f := v.Field(i)
		raw, block := f.Field(0).Bytes(), f.Field(1).Bool()
		switch {
		case len(raw) == 0:
		case block:
			keys = append(keys, "S"+string(raw[:min(len(raw), 16)]))
		default:
			keys = append(keys, "@"+string(raw))
		}
	}
	if p.pan >= 0 {
		pan = v.Field(p.pan).String()
	}
	return keys, pan
}

func pathsOfCommand(t reflect.Type) *commandPaths {
	if p, ok := commandCache.Load(t); ok {
		return p.(*commandPaths)
	}
	p := &commandPaths{pan: -1}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case f.Type == keyRefType:
			p.keys = append(p.keys, i)
		case f.Name == "pan" && f.Type.Kind() == reflect.String:
			p.pan = i
		}
	}
	actual, _ := commandCache.LoadOrStore(t, p)
	return actual.(*commandPaths)
}
