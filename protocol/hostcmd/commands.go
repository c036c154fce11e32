package hostcmd

import (
	"fmt"
	"time"

	"payhsm/access"
	"payhsm/fault"
	"payhsm/ops"
)

// command is a decoded request, ready to run against the operations layer.
// run returns the response fields that follow the error code.
type command interface {
	run(x *call) ([]byte, error)
}

// appender is a command that appends its response fields straight to the
// response (the MAC and data commands: their results come from the
// operations layer's append-style calls), instead of returning them from
// run. Its run is not called.
type appender interface {
	command
	appendFields(x *call, dst []byte) ([]byte, error)
}

// decoder decodes a command's fields (after the command code) from c,
// including the standard tail; on error it leaves c.err set.
type decoder func(c *cursor) command

// decoders is the command table. A code that is not here is answered with
// error 68 ("command disabled").
var decoders = map[string]decoder{
	"NC": decodeNC, "NO": decodeNO, "B2": decodeB2,
	"A0": decodeA0, "A6": decodeA6, "A8": decodeA8, "BU": decodeBU,
	"CW": decodeCW, "CY": decodeCY, "KQ": decodeKQ, "RY": decodeRY,
	"CA": decodeCA, "CC": decodeCC, "G0": decodeG0,
	"DC": decodeDC, "EC": decodeEC, "DA": decodeDA, "EA": decodeEA,
	"DG": decodeDG, "DE": decodeDE, "EE": decodeEE,
	"M6": decodeM6, "M8": decodeM8, "M0": decodeM0, "M2": decodeM2, "M4": decodeM4,
}

// Commands lists the supported command codes.
func Commands() []string {
	out := make([]string, 0, len(decoders))
	for k := range decoders {
		out = append(out, k)
	}
	return out
}

// call is the context of one command: the service and the profile selected
// by the LMK identifier. One call is reused for every command of a
// connection: scratch and the identifier memo save the per-request
// allocations of the hot path.
type call struct {
	s       *Server
	svc     *ops.Service
	profile string
	scratch []byte               // a command may build its response fields here
	cur     cursor               // the request's decoder
	decoded decoded              // the cursor's reused commands
	idents  map[string]identMemo // raw key field -> ops identifier
	// principal names the connection's principal (bind); actx is its
	// request context (source address, TLS).
	principal string
	actx      access.Context
	// pins are the aliases the command names by reference, each with the
	// key it resolved to when the command was authorized: the command
	// runs on that key (ident), so re-pointing an alias between the
	// decision and the operation cannot make it use a key never authorized.
	pins  [maxKeysPerCommand]aliasPin
	npins int
	// allowed remembers the connection's last Allow decisions (authorize):
	// a switch sends the same few commands on the same keys.
	allowed     [allowMemo]allowEntry
	allowedNext int

	// Who is on the connection (its address and TLS client name), and the
	// command count, for the logs and audit events (observe.go).
	remote, client string
	conn, seq      uint64
}

// identMemo is a remembered key identifier: the ops identifier of a key
// field in a profile. Key blocks are protected under the profile main key
// and references are public names, so nothing secret is kept.
type identMemo struct {
	profile string
	block   bool
	ident   string
	res     access.Resource // a block's authorization resource, once known
	hasRes  bool
}

// maxIdentMemo bounds a connection's identifier memo (a switch uses a few
// keys per connection; a client cycling through many just refills it).
const maxIdentMemo = 64

func (s *Server) newCall() *call {
	return &call{s: s, svc: s.ops, idents: make(map[string]identMemo)}
}

// ident is the ops key identifier of a key field.
func (x *call) ident(k keyRef) string {
	id, _, _ := x.identOf(k)
	return id
}

// identOf is k's ops key identifier and, when it came from the
// connection's memo (memo true), the memo's entry. A block field of the
// command being decoded or run is resolved once per command: the cursor
// keeps its identifier (an authorized command asks for each key twice).
func (x *call) identOf(k keyRef) (id string, m identMemo, memo bool) {
	for i := range x.npins {
		if !k.block && x.pins[i].ref == string(k.raw) {
			return x.pins[i].keyARN, identMemo{}, false
		}
	}
	i := -1
	if k.block {
		if i = x.cur.keyIndex(k); i >= 0 && x.cur.idents[i] != "" {
			return x.cur.idents[i], identMemo{}, false
		}
	}
	if m, ok := x.idents[string(k.raw)]; ok && m.block == k.block && m.profile == x.profile {
		if i >= 0 {
			x.cur.idents[i] = m.ident
		}
		return m.ident, m, true
	}
	id = string(k.raw)
	if k.block {
		id = ops.BlockIdent(x.profile, id)
	}
	if len(x.idents) >= maxIdentMemo {
		clear(x.idents)
	}
	m = identMemo{profile: x.profile, block: k.block, ident: id}
	x.idents[string(k.raw)] = m
	if i >= 0 {
		x.cur.idents[i] = id
	}
	return id, m, true
}

// dispatch serves one message and appends the response message (without
// its length prefix) to dst.
func (s *Server) dispatch(x *call, dst, msg []byte) []byte {
	start := time.Now()
	dst, res := s.answer(x, dst, msg)
	s.finish(x, res, start)
	return dst
}

// answer appends the response to msg to dst and says how it went.
func (s *Server) answer(x *call, dst, msg []byte) ([]byte, result) {
	req, err := splitMessage(msg, s.cfg.HeaderLength)
	if err != nil {
		if req.header == nil {
			hdr := msg[:min(len(msg), s.cfg.HeaderLength)]
			return appendResponse(dst, hdr, [2]byte{'Z', 'Z'}, codeInvalidInput, nil, nil), result{code: codeInvalidInput, err: err}
		}
		return appendResponse(dst, req.header, responseCode(req.code), codeInvalidInput, nil, nil),
			result{command: req.code, code: codeInvalidInput, err: err}
	}
	rc := responseCode(req.code)
	dec, ok := decoders[string(req.code[:])]
	if !ok {
		return appendResponse(dst, req.header, rc, codeDisabled, nil, nil), result{command: req.code, code: codeDisabled, err: errUnknownCommand}
	}
	c := &x.cur
	*c = cursor{b: req.body, reuse: &x.decoded}
	cmd := dec(c)
	if c.err != nil {
		code := errorCode(c.err)
		if s.dataTrail != nil {
			s.auditCommand(x, req.code, nil, code)
		}
		return appendResponse(dst, req.header, rc, code, nil, c.trailer), result{command: req.code, code: code, err: c.err}
	}
	x.profile = s.ops.DefaultProfile()
	if c.lmk != "" && c.lmk != "00" {
		x.profile = "lmk" + c.lmk
		if _, err := s.ops.ProfileKCV(x.profile); err != nil {
			code := codeInvalidLMK
			if fault.KindOf(err) != fault.NotFound {
				code = errorCode(err)
			}
			if s.dataTrail != nil {
				s.auditCommand(x, req.code, cmd, code)
			}
			return appendResponse(dst, req.header, rc, code, nil, c.trailer), result{command: req.code, code: code, err: err}
		}
	}
	if code := s.authorize(x, string(req.code[:]), cmd, c); code != "" {
		x.npins = 0
		return appendResponse(dst, req.header, rc, code, nil, c.trailer), result{command: req.code, code: code, err: errNotAuthorized}
	}
	if hook := afterAuthorize.Load(); hook != nil {
		(*hook)()
	}
	var resp []byte
	if a, ok := cmd.(appender); ok {
		resp, err = a.appendFields(x, appendResponse(dst, req.header, rc, codeOK, nil, nil))
	} else {
		var fields []byte
		if fields, err = cmd.run(x); err == nil {
			resp = appendResponse(dst, req.header, rc, codeOK, fields, nil)
		}
	}
	x.npins = 0 // the pins are this command's (authorize)
	if err != nil {
		code := errorCode(err)
		if s.dataTrail != nil {
			s.auditCommand(x, req.code, cmd, code)
		}
		return appendResponse(dst, req.header, rc, code, nil, c.trailer), result{command: req.code, code: code, err: err}
	}
	if s.dataTrail != nil {
		s.auditCommand(x, req.code, cmd, codeOK)
	}
	return appendTrailer(resp, c.trailer), result{command: req.code, code: codeOK}
}

func appendResponse(dst, header []byte, code [2]byte, errCode string, fields, trailer []byte) []byte {
	dst = append(dst, header...)
	dst = append(dst, code[:]...)
	dst = append(dst, errCode...)
	dst = append(dst, fields...)
	return appendTrailer(dst, trailer)
}

// appendTrailer appends the request's trailer, if it had one.
func appendTrailer(dst, trailer []byte) []byte {
	if trailer != nil {
		dst = append(dst, endOfMessage)
		dst = append(dst, trailer...)
	}
	return dst
}

// NC: diagnostics. Response: LMK check value 16H (6 significant digits,
// zero-filled, as payShield 10K) and the firmware number 9A.
type ncCmd struct{}

func decodeNC(c *cursor) command { c.finish(); return ncCmd{} }

func (ncCmd) run(x *call) ([]byte, error) {
	kcv, err := x.svc.ProfileKCV(x.profile)
	if err != nil {
		if fault.KindOf(err) == fault.NotFound {
			return nil, errCode(codeInvalidLMK, "no such profile")
		}
		return nil, err
	}
	f := make([]byte, 0, 25)
	f = append(f, kcv...)
	for len(f) < 16 {
		f = append(f, '0')
	}
	return append(f, x.s.cfg.Firmware...), nil
}

// NO: status. Mode 00: I/O buffer size 1N (3 = 32K), Ethernet type 1N (1 =
// TCP), TCP sockets 4N, firmware 9A, 5 reserved characters. Mode 01: PCI HSM
// compliance 1N (0: payhsm is not a certified device). Mode 02 (payhsm's;
// a payShield answers 15): the fleet node that answered, length 2N and
// name, so that a client behind a load balancer sees which node serves it
// without the layouts of modes 00 and 01 (which clients parse by length)
// changing.
type noCmd struct{ mode string }

func decodeNO(c *cursor) command {
	m := c.digits(2, "mode flag")
	c.finish()
	if c.err == nil && m != "00" && m != "01" && m != "02" {
		c.fail(codeInvalidInput, "mode flag")
	}
	return noCmd{m}
}

func (n noCmd) run(x *call) ([]byte, error) {
	switch n.mode {
	case "01":
		return []byte("0"), nil
	case "02":
		return fmt.Appendf(nil, "%02d%s", len(x.s.cfg.Node), x.s.cfg.Node), nil
	}
	return fmt.Appendf(nil, "31%04d%s00000", x.s.cfg.MaxConnections%10000, x.s.cfg.Firmware), nil
}

// B2: echo. Request: length 4H + data; response: the data.
type b2Cmd struct{ data []byte }

func decodeB2(c *cursor) command {
	n := c.hexLen(4, "length")
	d := c.take(n, "data")
	c.finish()
	return b2Cmd{d}
}

func (b b2Cmd) run(*call) ([]byte, error) { return append([]byte{}, b.data...), nil }
