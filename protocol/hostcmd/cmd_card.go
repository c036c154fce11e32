package hostcmd

import (
	"payhsm/ops"
)

// CW: generate a CVV. Request: CVK | PAN nN ";" | expiry 4N | service code
// 3N. Response: CVV 3N. CY: verify a CVV. Request: CVK | CVV 3N | PAN nN ";"
// | expiry 4N | service code 3N. Response: error code only (01: mismatch).
// Both are CardVerificationValue1 with the given service code (a CVV2 is the
// same computation with service code 000).
type cvvCmd struct {
	verify              bool
	key                 keyRef
	cvv, pan, exp, code string
}

func decodeCW(c *cursor) command { return decodeCVV(c, false) }
func decodeCY(c *cursor) command { return decodeCVV(c, true) }

func decodeCVV(c *cursor, verify bool) command {
	cmd := cvvCmd{verify: verify, key: c.key("CVK")}
	if verify {
		cmd.cvv = c.digits(3, "CVV")
	}
	cmd.pan = c.digitsTo(';', 12, 19, "account number")
	cmd.exp = c.digits(4, "expiry date")
	cmd.code = c.digits(3, "service code")
	c.finish()
	return cmd
}

func (v cvvCmd) run(x *call) ([]byte, error) {
	in := ops.CardValidationInput{KeyIdentifier: x.ident(v.key), PAN: v.pan, Kind: ops.CardCVV1,
		ExpiryDate: v.exp, ServiceCode: v.code}
	if v.verify {
		_, err := x.svc.VerifyCardValidationData(in, v.cvv)
		return nil, err
	}
	r, err := x.svc.GenerateCardValidationData(in)
	if err != nil {
		return nil, err
	}
	return []byte(r.Value), nil
}

// KQ: verify an ARQC and/or generate an ARPC (EMV option A ICC master key
// derivation). Request: mode 1N (0 verify, 1 verify + ARPC) | scheme 1N (0
// Visa: ICC master key used directly; 1 Mastercard M/Chip session key) |
// MK-AC | PAN+PSN 8B | ATC 2B | UN 4B | data length 2H | data nB | ";" |
// ARQC 8B | [ARC 2B, mode 1]. Response: [ARPC 8B, mode 1], ARPC method 1
// under the ICC master key MK-AC for both schemes (ops chooses it). Mode 2 (ARPC
// without verification) is refused: the operations layer computes an ARPC
// only after verifying the ARQC.
type kqCmd struct {
	mode, scheme byte
	key          keyRef
	panPSN, atc  []byte
	un, data     []byte
	arqc, arc    []byte
}

func decodeKQ(c *cursor) command {
	var k kqCmd
	if m := c.take(1, "mode flag"); m != nil {
		k.mode = m[0]
	}
	if s := c.take(1, "scheme ID"); s != nil {
		k.scheme = s[0]
	}
	k.key = c.key("MK-AC")
	k.panPSN = c.take(8, "PAN/PAN sequence number")
	k.atc = c.take(2, "ATC")
	k.un = c.take(4, "unpredictable number")
	if k.mode == '0' || k.mode == '1' {
		n := c.hexLen(2, "transaction data length")
		if c.err == nil && (n == 0 || n > 255) {
			c.fail(codeDataLength, "transaction data length")
		}
		k.data = c.take(n, "transaction data")
		c.expect(';', "transaction data delimiter")
	}
	k.arqc = c.take(8, "ARQC")
	if k.mode == '1' || k.mode == '2' {
		k.arc = c.take(2, "ARC")
	}
	c.finish()
	if c.err == nil {
		switch {
		case k.mode != '0' && k.mode != '1':
			c.fail(codeInvalidInput, "mode flag: 0 and 1 are supported")
		case k.scheme != '0' && k.scheme != '1':
			c.fail(codeInvalidInput, "scheme ID")
		}
	}
	return k
}

func (k kqCmd) run(x *call) ([]byte, error) {
	// PAN/PSN 8B is packed BCD: the 14 rightmost PAN digits, then the PSN.
	var digits [16]byte
	pp := appendHex(digits[:0], k.panPSN)
	sess := ops.EMVSession{Scheme: ops.EmvVisa, PAN: string(pp[:14]), PSN: string(pp[14:]), ATC: k.atc, UN: k.un}
	if k.scheme == '1' {
		sess.Scheme = ops.EmvMastercard
	}
	in := ops.AuthRequestCryptogramInput{KeyIdentifier: x.ident(k.key), TransactionData: k.data,
		MajorKeyMode: ops.EmvOptionA, Session: sess}
	var arpc *ops.ARPCRequest
	if k.mode == '1' {
		arpc = &ops.ARPCRequest{Method: 1, AuthResponseCode: k.arc}
	}
	r, err := x.svc.VerifyAuthRequestCryptogram(in, k.arqc, arpc)
	if err != nil {
		return nil, err
	}
	if arpc == nil {
		return nil, nil
	}
	return r.Cryptogram, nil
}

// RY: American Express card security codes, version 1 (flag 0). Request:
// mode 1N (3 generate, 4 verify) | flag 1N (0) | CSCK | account number 19N
// (left-justified, zero-filled) | expiry 4N (YYMM) | [mode 4: CSC-5 5N | CSC-4
// 4N | CSC-3 3N, each all F when absent]. Response: mode 1N | mode 3: CSC-5
// 5N, CSC-4 4N, CSC-3 3N; mode 4: one result digit per CSC (0 verified, 1
// absent). A CSC that does not verify is error 01 (without the result
// digits). Other flags (version 2, AEVV) are refused with 15: the public
// sources disagree on their values and none gives their field layout.
type ryCmd struct {
	verify           bool
	key              keyRef
	pan, exp         string
	csc5, csc4, csc3 string // mode 4; "" = absent
}

// action: a verification needs VerifyCardValidationData (see actionByMode).
func (r ryCmd) action() string {
	if r.verify {
		return "VerifyCardValidationData"
	}
	return "GenerateCardValidationData"
}

func decodeRY(c *cursor) command {
	var r ryCmd
	mode := c.digits(1, "mode")
	flag := c.digits(1, "flag")
	r.key = c.key("CSCK")
	acct := c.digits(19, "account number")
	r.exp = c.digits(4, "expiration date")
	r.verify = mode == "4"
	if r.verify {
		r.csc5 = c.digitsOrF(5, "5-digit CSC")
		r.csc4 = c.digitsOrF(4, "4-digit CSC")
		r.csc3 = c.digitsOrF(3, "3-digit CSC")
	}
	c.finish()
	if c.err != nil {
		return r
	}
	switch {
	case mode != "3" && mode != "4":
		c.fail(codeInvalidInput, "mode: 3 and 4 are supported")
	case flag != "0":
		c.fail(codeInvalidInput, "flag: 0 (CSC version 1) is supported")
	case acct[15:] != "0000":
		c.fail(codeInvalidInput, "account number: a 15-digit American Express account, zero-filled")
	case r.verify && r.csc5 == "" && r.csc4 == "" && r.csc3 == "":
		c.fail(codeInvalidInput, "no CSC to verify")
	}
	r.pan = acct[:15]
	return r
}

// digitsOrF reads n decimal digits, or n F characters for an absent value
// (returned as "").
func (c *cursor) digitsOrF(n int, what string) string {
	v := c.take(n, what)
	if c.err != nil {
		return ""
	}
	if string(v) == "FFFFF"[:n] {
		return ""
	}
	for _, b := range v {
		if !isDigit(b) {
			c.fail(codeInvalidInput, what+": not decimal")
			return ""
		}
	}
	return string(v)
}

func (r ryCmd) run(x *call) ([]byte, error) {
	in := ops.CardValidationInput{KeyIdentifier: x.ident(r.key), PAN: r.pan, Kind: ops.CardAmexCSC1, ExpiryDate: r.exp}
	if !r.verify {
		out := []byte{'3'}
		for _, n := range [3]int{5, 4, 3} {
			in.Length = n
			v, err := x.svc.GenerateCardValidationData(in)
			if err != nil {
				return nil, err
			}
			out = append(out, v.Value...)
		}
		return out, nil
	}
	out := []byte{'4'}
	for _, v := range [3]string{r.csc5, r.csc4, r.csc3} {
		if v == "" {
			out = append(out, '1')
			continue
		}
		if _, err := x.svc.VerifyCardValidationData(in, v); err != nil {
			return nil, err
		}
		out = append(out, '0')
	}
	return out, nil
}
