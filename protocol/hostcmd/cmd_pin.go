package hostcmd

import (
	"strings"

	"payhsm/ops"
)

// pinFormatCode maps a payShield PIN block format code onto the operations
// layer's format. Only the TDES formats are carried: ISO format 4 (48) has a
// 32H block that the fixed 16H PIN block fields cannot hold.
func pinFormatCode(code []byte) (ops.PinFormat, bool) {
	switch string(code) {
	case "01":
		return ops.PinFormatISO0, true
	case "05":
		return ops.PinFormatISO1, true
	case "47":
		return ops.PinFormatISO3, true
	}
	return 0, false
}

func (c *cursor) pinFormat(what string) ops.PinFormat {
	code := c.take(2, what)
	for _, b := range code {
		if !isDigit(b) {
			c.fail(codeInvalidInput, what+": not decimal")
		}
	}
	if c.err != nil {
		return 0
	}
	f, ok := pinFormatCode(code)
	if !ok {
		c.fail(codeBadFormat, what)
	}
	return f
}

// accountField decodes the 12N account field as the PAN it stands for (see
// accountPAN), in one allocation.
func (c *cursor) accountField(what string) string {
	v := c.take(12, what)
	var pan [13]byte
	for i, b := range v {
		if !isDigit(b) {
			c.fail(codeInvalidInput, what+": not decimal")
			return ""
		}
		pan[i] = b
	}
	if c.err != nil {
		return ""
	}
	pan[12] = '0'
	return string(pan[:])
}

// accountPAN is a PAN whose "rightmost 12 digits excluding the check digit"
// (ISO 9564-1 formats 0 and 3, and the Visa PVV's TSP) are account, the 12N
// account field of the PIN commands: the account followed by a placeholder
// check digit.
func accountPAN(account string) string { return account + "0" }

// CA (TPK to ZPK) and CC (ZPK to ZPK): translate a PIN block.
// Request: source key | destination key | maximum PIN length 2N | PIN block
// 16H | source format 2N | destination format 2N | account 12N.
// Response: PIN length 2N | PIN block 16H | destination format 2N. A PIN
// longer than the maximum PIN length is refused with 24, as payShield does.
type translateCmd struct {
	src, dst      keyRef
	maxPIN        int
	block         pinBlock
	inFmt, outFmt ops.PinFormat
	outCode       []byte
	pan           string // the account as a PAN (accountPAN)
	dukpt         *ops.PinDukpt
	ksn           [10]byte
}

// pinBlock is a 16H PIN block field, decoded.
type pinBlock [8]byte

// pinBlock decodes a 16H PIN block field into b.
func (c *cursor) pinBlock(b *pinBlock) {
	c.hexBytes(16, "PIN block", b[:0])
}

func decodeCA(c *cursor) command { return decodeTranslate(c) }
func decodeCC(c *cursor) command { return decodeTranslate(c) }

func decodeTranslate(c *cursor) command {
	t := c.translateCmd()
	t.src = c.key("source key")
	t.dst = c.key("destination key")
	if t.maxPIN = c.num(2, "maximum PIN length"); c.err == nil && (t.maxPIN < 4 || t.maxPIN > 12) {
		c.fail(codePinLength, "maximum PIN length")
	}
	c.pinBlock(&t.block)
	t.inFmt = c.pinFormat("source format")
	t.outCode = c.b[min(c.i, len(c.b)):min(c.i+2, len(c.b))]
	t.outFmt = c.pinFormat("destination format")
	t.pan = c.accountField("account number")
	c.finish()
	return t
}

// G0: translate a PIN block from a TDES DUKPT (BDK-derived) key to a ZPK.
// Request: BDK | ZPK | KSN descriptor 3H | KSN 20H | PIN block 16H | source
// format 2N | destination format 2N | account 12N. Response as CC.
func decodeG0(c *cursor) command {
	t := c.translateCmd()
	t.maxPIN = 12
	t.src = c.key("BDK")
	t.dst = c.key("ZPK")
	c.hex(3, "KSN descriptor")
	t.dukpt = &ops.PinDukpt{KSN: c.hexBytes(20, "KSN", t.ksn[:0])}
	c.pinBlock(&t.block)
	t.inFmt = c.pinFormat("source format")
	t.outCode = c.b[min(c.i, len(c.b)):min(c.i+2, len(c.b))]
	t.outFmt = c.pinFormat("destination format")
	t.pan = c.accountField("account number")
	c.finish()
	return t
}

func (t *translateCmd) run(x *call) ([]byte, error) {
	in := ops.TranslatePinInput{IncomingKey: x.ident(t.src), OutgoingKey: x.ident(t.dst),
		Incoming: pinSpec(t.inFmt, t.pan), Outgoing: pinSpec(t.outFmt, t.pan),
		EncryptedPinBlock: t.block[:], IncomingDukpt: t.dukpt}
	r, err := x.svc.TranslatePin(in)
	if err != nil {
		return nil, err
	}
	if r.PinLength < 0 || r.PinLength > t.maxPIN {
		return nil, errCode(codePinLength, "the PIN is longer than the maximum PIN length")
	}
	const decimal = "0123456789"
	out := append(x.scratch[:0], decimal[r.PinLength/10], decimal[r.PinLength%10]) // maxPIN <= 12: two digits
	out = appendHex(out, r.PinBlock)
	x.scratch = append(out, t.outCode...)
	return x.scratch, nil
}

func pinSpec(f ops.PinFormat, pan string) ops.PinBlockSpec {
	if f == ops.PinFormatISO1 {
		return ops.PinBlockSpec{Format: f}
	}
	return ops.PinBlockSpec{Format: f, PAN: pan}
}

// DC (TPK) and EC (ZPK): verify a PIN against its Visa PVV.
// Request: PIN key | PVK | PIN block 16H | format 2N | account 12N | PVKI 1N
// | PVV 4N. Response: error code only (01: the PIN does not verify).
type pvvVerifyCmd struct {
	pek, pvk keyRef
	block    pinBlock
	account  string
	format   ops.PinFormat
	pvki     int
	pvv      string
}

func decodeDC(c *cursor) command { return decodePVVVerify(c) }
func decodeEC(c *cursor) command { return decodePVVVerify(c) }

func decodePVVVerify(c *cursor) command {
	v := &pvvVerifyCmd{}
	v.pek = c.key("PIN key")
	v.pvk = c.key("PVK")
	c.pinBlock(&v.block)
	v.format = c.pinFormat("format")
	v.account = c.digits(12, "account number")
	v.pvki = c.num(1, "PVKI")
	v.pvv = c.digits(4, "PVV")
	c.finish()
	return v
}

func (v *pvvVerifyCmd) run(x *call) ([]byte, error) {
	_, err := x.svc.VerifyPin(ops.VerifyPinInput{VerificationKey: x.ident(v.pvk), EncryptionKey: x.ident(v.pek),
		Visa: &ops.VisaPinCheck{PVKI: v.pvki, PVV: v.pvv}, EncryptedPinBlock: v.block[:],
		PAN: accountPAN(v.account), Format: v.format})
	return nil, err
}

// DA (TPK) and EA (ZPK): verify a PIN against its IBM 3624 offset.
// Request: PIN key | PVK | maximum PIN length 2N | PIN block 16H | format 2N
// | check length 2N | account 12N | decimalisation table 16H | PIN
// validation data 12A ("N" = the last 5 account digits) | offset 12H
// (left-justified, F-padded). Response: error code only.
type ibmVerifyCmd struct {
	pek, pvk keyRef
	block    pinBlock
	account  string
	format   ops.PinFormat
	checkLen int
	ibm      ops.Ibm3624Params
}

func decodeDA(c *cursor) command { return decodeIBMVerify(c) }
func decodeEA(c *cursor) command { return decodeIBMVerify(c) }

func decodeIBMVerify(c *cursor) command {
	v := &ibmVerifyCmd{}
	v.pek = c.key("PIN key")
	v.pvk = c.key("PVK")
	if n := c.num(2, "maximum PIN length"); c.err == nil && (n < 4 || n > 12) {
		c.fail(codePinLength, "maximum PIN length")
	}
	c.pinBlock(&v.block)
	v.format = c.pinFormat("format")
	v.checkLen = c.num(2, "check length")
	v.account = c.digits(12, "account number")
	v.ibm.DecimalizationTable = c.hex(16, "decimalisation table")
	vd := string(c.take(12, "PIN validation data"))
	off := c.hex(12, "offset")
	c.finish()
	if c.err != nil {
		return v
	}
	if v.checkLen < 4 || v.checkLen > 12 {
		c.fail(codePinLength, "check length")
	}
	// "N" marks where the last 5 digits of the account go; data without it
	// is padded to 16 with F (the pad character).
	v.ibm.ValidationData = strings.Replace(vd, "N", v.account[7:], 1)
	v.ibm.PadCharacter = 'F'
	v.ibm.PinOffset = strings.TrimRight(off, "F")
	if len(v.ibm.PinOffset) != v.checkLen {
		c.fail(codeInvalidInput, "offset length differs from the check length")
	}
	return v
}

func (v *ibmVerifyCmd) run(x *call) ([]byte, error) {
	_, err := x.svc.VerifyPin(ops.VerifyPinInput{VerificationKey: x.ident(v.pvk), EncryptionKey: x.ident(v.pek),
		Ibm: &v.ibm, EncryptedPinBlock: v.block[:], PAN: accountPAN(v.account), Format: v.format})
	return nil, err
}

// payhsm has no PIN encrypted under the LMK (the AWS API never exposes a
// clear or LMK-encrypted PIN), so DG, DE and EE take or return the PIN as a
// PIN block under a PIN key instead of payShield's LMK-PIN field.

// DG: a PIN's Visa PVV. Request: PIN key | PVK | PIN block 16H | format 2N |
// account 12N | PVKI 1N. Response: PVV 4N.
type pvvGenCmd struct {
	pek, pvk keyRef
	block    pinBlock
	account  string
	format   ops.PinFormat
	pvki     int
}

func decodeDG(c *cursor) command {
	g := &pvvGenCmd{}
	g.pek = c.key("PIN key")
	g.pvk = c.key("PVK")
	c.pinBlock(&g.block)
	g.format = c.pinFormat("format")
	g.account = c.digits(12, "account number")
	g.pvki = c.num(1, "PVKI")
	c.finish()
	return g
}

func (g *pvvGenCmd) run(x *call) ([]byte, error) {
	r, err := x.svc.GeneratePin(ops.GeneratePinInput{GenerationKey: x.ident(g.pvk), EncryptionKey: x.ident(g.pek),
		Method: ops.PinGenVisaPinVerificationValue, PVKI: g.pvki, EncryptedPinBlock: g.block[:],
		PAN: accountPAN(g.account), Format: g.format})
	if err != nil {
		return nil, err
	}
	return []byte(r.VerificationValue), nil
}

// ibmParams decodes check length 2N | account 12N | decimalisation table 16H
// | PIN validation data 12A.
func (c *cursor) ibmParams() (checkLen int, account string, p ops.Ibm3624Params) {
	checkLen = c.num(2, "check length")
	account = c.digits(12, "account number")
	p.DecimalizationTable = c.hex(16, "decimalisation table")
	vd := string(c.take(12, "PIN validation data"))
	if c.err == nil && (checkLen < 4 || checkLen > 12) {
		c.fail(codePinLength, "check length")
	}
	if c.err == nil {
		p.ValidationData = strings.Replace(vd, "N", account[7:], 1)
		p.PadCharacter = 'F'
	}
	return
}

// DE: a PIN's IBM 3624 offset. Request: PIN key | PVK | PIN block 16H |
// format 2N | check length 2N | account 12N | decimalisation table 16H | PIN
// validation data 12A. Response: offset 12H (left-justified, F-padded).
// EE: the PIN an IBM 3624 offset yields. Request: PIN key | format 2N | PVK
// | offset 12H | check length 2N | account 12N | decimalisation table 16H |
// PIN validation data 12A. Response: PIN block 16H under the PIN key.
type ibmGenCmd struct {
	derive   bool
	pek, pvk keyRef
	block    pinBlock
	account  string
	format   ops.PinFormat
	checkLen int
	ibm      ops.Ibm3624Params
}

func decodeDE(c *cursor) command {
	g := &ibmGenCmd{}
	g.pek = c.key("PIN key")
	g.pvk = c.key("PVK")
	c.pinBlock(&g.block)
	g.format = c.pinFormat("format")
	g.checkLen, g.account, g.ibm = c.ibmParams()
	c.finish()
	return g
}

func decodeEE(c *cursor) command {
	g := &ibmGenCmd{derive: true}
	g.pek = c.key("PIN key")
	g.format = c.pinFormat("format")
	g.pvk = c.key("PVK")
	off := c.hex(12, "offset")
	g.checkLen, g.account, g.ibm = c.ibmParams()
	c.finish()
	g.ibm.PinOffset = strings.TrimRight(off, "F")
	if c.err == nil && len(g.ibm.PinOffset) != g.checkLen {
		c.fail(codeInvalidInput, "offset length differs from the check length")
	}
	return g
}

func (g *ibmGenCmd) run(x *call) ([]byte, error) {
	in := ops.GeneratePinInput{GenerationKey: x.ident(g.pvk), EncryptionKey: x.ident(g.pek), Ibm: g.ibm,
		PinLength: g.checkLen, PAN: accountPAN(g.account), Format: g.format}
	if g.derive {
		in.Method = ops.PinGenIbm3624PinFromOffset
	} else {
		in.Method, in.EncryptedPinBlock = ops.PinGenIbm3624PinOffset, g.block[:]
	}
	r, err := x.svc.GeneratePin(in)
	if err != nil {
		return nil, err
	}
	if g.derive {
		x.scratch = appendHex(x.scratch[:0], r.EncryptedPinBlock)
		return x.scratch, nil
	}
	off := r.PinOffset
	for len(off) < 12 {
		off += "F"
	}
	return []byte(off), nil
}
