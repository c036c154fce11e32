package hostcmd

import (
	"fmt"
	"strconv"

	"payhsm/fault"
)

// Error codes (payShield's standard codes).
const (
	codeOK           = "00"
	codeInvalidLMK   = "13"
	codeInvalidInput = "15"
	codeInternal     = "41"
	codeDisabled     = "68"
	codeDataLength   = "80"
)

type response struct {
	code   string
	err    string
	fields []byte
}

func (s *Server) dispatch(msg []byte) []byte {
	req, err := splitMessage(msg, s.cfg.HeaderLength)
	if err != nil {
		hdr := msg
		if len(hdr) > s.cfg.HeaderLength {
			hdr = hdr[:s.cfg.HeaderLength]
		}
		code := "ZZ"
		if req != nil {
			code = responseCode(req.code)
		}
		return encode(hdr, code, codeInvalidInput, nil, nil)
	}
	resp := s.run(req)
	return encode(req.header, resp.code, resp.err, resp.fields, req.trailer)
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

func (s *Server) run(req *request) response {
	rc := responseCode(req.code)
	fail := func(code string) response { return response{code: rc, err: code} }
	switch req.code {
	case "NC":
		if err := req.splitTail(); err != nil || len(req.body) != 0 {
			return fail(codeInvalidInput)
		}
		profile, ok := s.profile(req.lmk)
		if !ok {
			return fail(codeInvalidLMK)
		}
		kcv, err := s.ops.ProfileKCV(profile)
		if err != nil {
			return fail(errorCode(err))
		}
		f := make([]byte, 0, 25)
		f = append(f, kcv...)
		for len(f) < 16 {
			f = append(f, '0')
		}
		f = append(f, s.cfg.Firmware...)
		return response{code: rc, err: codeOK, fields: f}
	case "NO":
		if err := req.splitTail(); err != nil {
			return fail(codeInvalidInput)
		}
		switch string(req.body) {
		case "00":
			return response{code: rc, err: codeOK, fields: fmt.Appendf(nil, "31%04d%s00000", s.cfg.MaxConnections, s.cfg.Firmware)}
		case "01":
			// payhsm is not a PCI-HSM certified device.
			return response{code: rc, err: codeOK, fields: []byte("0")}
		}
		return fail(codeInvalidInput)
	case "B2":
		if len(req.body) < 4 {
			return fail(codeInvalidInput)
		}
		n, err := strconv.ParseUint(string(req.body[:4]), 16, 16)
		if err != nil {
			return fail(codeInvalidInput)
		}
		if int(n) > len(req.body)-4 {
			return fail(codeDataLength)
		}
		data := req.body[4 : 4+n]
		rest := &request{body: req.body[4+n:]}
		if err := rest.splitTail(); err != nil || len(rest.body) != 0 {
			return fail(codeInvalidInput)
		}
		req.trailer = rest.trailer
		return response{code: rc, err: codeOK, fields: append([]byte{}, data...)}
	}
	return fail(codeDisabled)
}

// profile maps an LMK identifier onto a profile: none or 00 is the default
// profile; nn names profile "lmknn".
func (s *Server) profile(lmk string) (string, bool) {
	if lmk == "" || lmk == "00" {
		return s.ops.DefaultProfile(), true
	}
	return "lmk" + lmk, true
}

// errorCode translates a fault kind into a payShield error code.
func errorCode(err error) string {
	switch fault.KindOf(err) {
	case fault.NotFound:
		return codeInvalidLMK
	case fault.Validation:
		return codeInvalidInput
	case fault.VerificationFailed:
		return "01"
	default:
		return codeInternal
	}
}
