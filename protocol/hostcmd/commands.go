package hostcmd

import (
	"fmt"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/ops"
)

// command is a decoded request, ready to run against the operations layer.
// run returns the response fields that follow the error code.
type command interface {
	run(x *call) ([]byte, error)
}

// decoder decodes a command's fields (after the command code) from c,
// including the standard tail; on error it leaves c.err set.
type decoder func(c *cursor) command

// decoders is the command table. A code that is not here is answered with
// error 68 ("command disabled").
var decoders = map[string]decoder{
	"NC": decodeNC, "NO": decodeNO, "B2": decodeB2,
	"A0": decodeA0, "BU": decodeBU,
	"CW": decodeCW, "CY": decodeCY, "KQ": decodeKQ,
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
// by the LMK identifier.
type call struct {
	s       *Server
	svc     *ops.Service
	profile string
}

// ident is the ops key identifier of a key field.
func (x *call) ident(k keyRef) string {
	if k.block != "" {
		return ops.BlockIdent(x.profile, k.block)
	}
	return k.ref
}

// dispatch serves one message and returns the response message (without
// its length prefix).
func (s *Server) dispatch(msg []byte) []byte {
	req, err := splitMessage(msg, s.cfg.HeaderLength)
	if err != nil {
		hdr := msg
		if len(hdr) > s.cfg.HeaderLength {
			hdr = hdr[:s.cfg.HeaderLength]
		}
		code := "ZZ"
		if req != nil {
			code = ResponseCode(req.code)
		}
		return encode(hdr, code, codeInvalidInput, nil, nil)
	}
	rc := ResponseCode(req.code)
	dec, ok := decoders[req.code]
	if !ok {
		return encode(req.header, rc, codeDisabled, nil, nil)
	}
	c := &cursor{b: req.body}
	cmd := dec(c)
	if c.err != nil {
		return encode(req.header, rc, errorCode(c.err), nil, c.trailer)
	}
	x := &call{s: s, svc: s.ops, profile: s.ops.DefaultProfile()}
	if c.lmk != "" && c.lmk != "00" {
		x.profile = "lmk" + c.lmk
		if _, err := s.ops.ProfileKCV(x.profile); err != nil {
			code := codeInvalidLMK
			if fault.KindOf(err) != fault.NotFound {
				code = errorCode(err)
			}
			return encode(req.header, rc, code, nil, c.trailer)
		}
	}
	fields, err := cmd.run(x)
	if err != nil {
		if fault.KindOf(err) == fault.Internal {
			if _, isCode := err.(*codeError); !isCode {
				s.log.Warn("host command failed", zap.String("command", req.code), zap.Error(err))
			}
		}
		return encode(req.header, rc, errorCode(err), nil, c.trailer)
	}
	return encode(req.header, rc, codeOK, fields, c.trailer)
}

func encode(header []byte, code, errCode string, fields, trailer []byte) []byte {
	out := make([]byte, 0, len(header)+4+len(fields)+len(trailer)+1)
	out = append(out, header...)
	out = append(out, code...)
	out = append(out, errCode...)
	out = append(out, fields...)
	if trailer != nil {
		out = append(out, endOfMessage)
		out = append(out, trailer...)
	}
	return out
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
// compliance 1N (0: payhsm is not a certified device).
type noCmd struct{ mode string }

func decodeNO(c *cursor) command {
	m := c.digits(2, "mode flag")
	c.finish()
	if c.err == nil && m != "00" && m != "01" {
		c.fail(codeInvalidInput, "mode flag")
	}
	return noCmd{m}
}

func (n noCmd) run(x *call) ([]byte, error) {
	if n.mode == "01" {
		return []byte("0"), nil
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
