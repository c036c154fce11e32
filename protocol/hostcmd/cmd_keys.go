package hostcmd

import (
	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
)

// A0: generate a key as a key block under the profile main key; mode 1 also
// returns it under a ZMK. Request: mode 1H ("0", "1") | key type 3H ("FFF")
// | key scheme 1A ("S") | mode 1: [";" ZMK/TMK flag 1N] ZMK, key scheme
// (ZMK) 1A ("R") | [%nn] | "#" usage 2A, algorithm 2A, mode of use 1A, KVN
// 2N, exportability 1A, optional blocks 2N ("00") | mode 1: ["&"
// exportability 1A] ["!" key block version 1A]. Response: "S" + key block |
// mode 1: "R" + X9.143 block under the ZMK | KCV 6H.
type a0Cmd struct {
	attrs      keyspec.Attributes
	exportable bool
	export     *zmkExport // mode 1
}

// zmkExport is how a key leaves under a ZMK (A0 mode 1, A8).
type zmkExport struct {
	zmk           keyRef
	exportability keyspec.Exportability // "" = the default (E)
	version       byte                  // 0 = any
}

// keyBlockAlgorithms maps A0's 2-character algorithm onto a key algorithm.
var keyBlockAlgorithms = map[string]keyspec.Algorithm{
	"T2": keyspec.TDES2Key, "T3": keyspec.TDES3Key,
	"A1": keyspec.AES128, "A2": keyspec.AES192, "A3": keyspec.AES256,
}

func decodeA0(c *cursor) command {
	var cmd a0Cmd
	mode := c.take(1, "mode")
	kt := c.hex(3, "key type")
	scheme := c.take(1, "key scheme")
	var zmkScheme []byte
	if c.err == nil && mode[0] == '1' {
		cmd.export = &zmkExport{}
		c.zmkFlag()
		cmd.export.zmk = c.key("ZMK")
		zmkScheme = c.take(1, "key scheme (ZMK)")
	}
	c.lmkID()
	c.expect('#', "key block attributes")
	usage := string(c.take(2, "key usage"))
	alg := c.take(2, "algorithm")
	mou := c.take(1, "mode of use")
	c.digits(2, "key version number")
	exp := c.take(1, "exportability")
	nopt := c.digits(2, "optional blocks")
	if cmd.export != nil {
		c.exportOptions(cmd.export)
	}
	c.end()
	if c.err != nil {
		return nil
	}
	var ok bool
	switch {
	case mode[0] != '0' && mode[0] != '1':
		c.fail(codeInvalidInput, "only modes 0 (generate) and 1 (generate and export under a ZMK) are supported")
	case kt != "FFF":
		c.fail("04", "key type must be FFF with a key-block LMK")
	case scheme[0] != 'S':
		c.fail(codeKeyScheme, "key scheme must be S")
	case zmkScheme != nil && zmkScheme[0] != 'R':
		c.fail(codeKeyScheme, "key scheme (ZMK) must be R (X9.143 key block)")
	case nopt != "00":
		c.fail("AB", "optional blocks are not supported")
	}
	if cmd.attrs.Usage, ok = keyspec.UsageFromTR31(usage); !ok && c.err == nil {
		c.fail(codeBadUsage, "key usage")
	}
	if cmd.attrs.Algorithm, ok = keyBlockAlgorithms[string(alg)]; !ok && c.err == nil {
		c.fail(codeBadAlgorithm, "algorithm")
	}
	var err error
	if cmd.attrs.Modes, err = keyspec.ModesFromTR31(mou[0]); err != nil && c.err == nil {
		c.fail(codeBadModeOfUse, "mode of use")
	}
	switch exp[0] {
	case 'E':
		cmd.exportable = true
	case 'N', 'S':
	default:
		c.fail(codeExportField, "exportability")
	}
	cmd.attrs.Class = keyspec.Symmetric
	return cmd
}

func (a a0Cmd) run(x *call) ([]byte, error) {
	if a.export == nil {
		block, kcv, err := x.svc.GenerateKeyBlock(x.profile, a.attrs, a.exportable)
		if err != nil {
			return nil, err
		}
		return keyAnswer(x, 'S', block, 0, "", kcv), nil
	}
	block, zmkBlock, kcv, err := x.svc.GenerateKeyBlockExport(x.profile, a.attrs, a.exportable, x.ident(a.export.zmk), a.export.exportability)
	if err != nil {
		return nil, err
	}
	if err := a.export.checkVersion(zmkBlock); err != nil {
		return nil, err
	}
	return keyAnswer(x, 'S', block, 'R', zmkBlock, kcv), nil
}

// keyAnswer builds a key command's answer in the call's scratch space:
// prefix + block, [prefix2 + block2], KCV.
func keyAnswer(x *call, prefix byte, block string, prefix2 byte, block2, kcv string) []byte {
	out := append(x.scratch[:0], prefix)
	out = append(out, block...)
	if prefix2 != 0 {
		out = append(out, prefix2)
		out = append(out, block2...)
	}
	out = append(out, kcv...)
	x.scratch = out
	return out
}

// zmkFlag decodes the optional ";" + ZMK/TMK flag (0 or 1). A key block's
// usage says what the key is, so the flag has no further effect.
func (c *cursor) zmkFlag() {
	if c.accept(';') {
		if f := c.take(1, "ZMK/TMK flag"); c.err == nil && f[0] != '0' && f[0] != '1' {
			c.fail(codeInvalidInput, "ZMK/TMK flag must be 0 or 1")
		}
	}
}

// exportOptions decodes the optional "&" exportability (E, N, S) and "!"
// key block version (B or D) of a key leaving under a ZMK.
func (c *cursor) exportOptions(e *zmkExport) {
	if c.accept('&') {
		if v := c.take(1, "exportability"); c.err == nil {
			switch v[0] {
			case 'E':
				e.exportability = keyspec.Exportable
			case 'N':
				e.exportability = keyspec.NonExportable
			case 'S':
				e.exportability = keyspec.Sensitive
			default:
				c.fail(codeExportField, "exportability must be E, N or S")
			}
		}
	}
	if c.accept('!') {
		if v := c.take(1, "key block version"); c.err == nil {
			if v[0] != 'B' && v[0] != 'D' {
				c.fail(codeInvalidInput, "key block version must be B (TDES ZMK) or D (AES ZMK); A and C are not produced")
			}
			e.version = v[0]
		}
	}
}

// checkVersion refuses an exported block whose version is not the one asked for.
func (e *zmkExport) checkVersion(block string) error {
	if e.version != 0 && block[0] != e.version {
		return errCode(codeInvalidInput, "key block version "+string(e.version)+" does not match the ZMK's algorithm")
	}
	return nil
}

// A6: import a key under a ZMK. Request: key type 3H ("FFF") | ZMK (a K0 or
// K1 key that may unwrap) | key under the ZMK: "R" + X9.143 block | key
// scheme (LMK) 1A ("S") | [%nn]. Response: "S" + the key under the profile
// main key | KCV 6H. The key's attributes are those of the block's
// authenticated header.
type a6Cmd struct {
	zmk   keyRef
	block []byte // the X9.143 block under the ZMK, without "R"
}

func decodeA6(c *cursor) command {
	kt := c.hex(3, "key type")
	zmk := c.key("ZMK")
	var block []byte
	switch c.peek() {
	case 'R':
		c.i++
		block = c.keyBlock("key under ZMK")
	case 'S':
		c.fail(codeKeyScheme, "key under ZMK: Thales key blocks (S) are not accepted under a ZMK; send an X9.143 block (R)")
	default:
		c.fail(codeKeyScheme, "key under ZMK: only X9.143 key blocks (R) are accepted")
	}
	scheme := c.take(1, "key scheme (LMK)")
	c.finish()
	if c.err != nil {
		return nil
	}
	switch {
	case kt != "FFF":
		c.fail("04", "key type must be FFF with a key-block LMK")
	case scheme[0] != 'S':
		c.fail(codeKeyScheme, "key scheme (LMK) must be S")
	}
	return a6Cmd{zmk, block}
}

func (a a6Cmd) run(x *call) ([]byte, error) {
	block, kcv, err := x.svc.ImportKeyBlock(x.profile, x.ident(a.zmk), string(a.block))
	if err != nil {
		return nil, err
	}
	return keyAnswer(x, 'S', block, 0, "", kcv), nil
}

// A8: export a key under a ZMK. Request: key type 3H ("FFF") | [";" ZMK/TMK
// flag 1N] | ZMK (a K0 or K1 key that may wrap, at least as strong as the
// key) | key (exportable) | key scheme (ZMK) 1A ("R") | [%nn] | ["&"
// exportability 1A: E, N or S] | ["!" key block version 1A: B under a TDES
// ZMK, D under an AES ZMK]. Response: "R" + X9.143 block | KCV 6H.
type a8Cmd struct {
	key    keyRef
	export zmkExport
}

func decodeA8(c *cursor) command {
	var cmd a8Cmd
	kt := c.hex(3, "key type")
	c.zmkFlag()
	cmd.export.zmk = c.key("ZMK")
	cmd.key = c.key("key")
	scheme := c.take(1, "key scheme (ZMK)")
	c.lmkID()
	c.exportOptions(&cmd.export)
	c.end()
	if c.err != nil {
		return nil
	}
	switch {
	case kt != "FFF":
		c.fail("04", "key type must be FFF with a key-block LMK")
	case scheme[0] != 'R':
		c.fail(codeKeyScheme, "key scheme (ZMK) must be R (X9.143 key block)")
	}
	return cmd
}

func (a a8Cmd) run(x *call) ([]byte, error) {
	block, kcv, err := x.svc.ExportKeyBlock(x.ident(a.key), x.ident(a.export.zmk), a.export.exportability)
	if err != nil {
		return nil, err
	}
	if err := a.export.checkVersion(block); err != nil {
		return nil, err
	}
	return keyAnswer(x, 'R', block, 0, "", kcv), nil
}

// BU: a key's check value. Request: key type code 2A | key length flag 1A
// (0, 1, 2 or F) | key | [";" key type 3H] | [";" 2 reserved + KCV type 1N].
// Response: KCV 16H for KCV type 0 (ops.FullCheckValue), 6H for type 1 (the
// key's KCV as the AWS API reports it; also when the type is absent).
type buCmd struct {
	flag    byte
	kcvType byte
	key     keyRef
}

func decodeBU(c *cursor) command {
	c.take(2, "key type code")
	flag := c.take(1, "key length flag")
	k := c.key("key")
	if c.accept(';') {
		c.hex(3, "key type")
	}
	kcvType := byte('1')
	if c.accept(';') {
		c.take(2, "reserved")
		if t := c.take(1, "KCV type"); t != nil {
			kcvType = t[0]
		}
	}
	c.finish()
	if c.err != nil {
		return nil
	}
	if kcvType != '0' && kcvType != '1' {
		c.fail(codeInvalidInput, "KCV type must be 0 (16H) or 1 (6H)")
	}
	switch flag[0] {
	case '0', '1', '2', 'F':
	default:
		c.fail("05", "key length flag")
	}
	return buCmd{flag[0], kcvType, k}
}

func (b buCmd) run(x *call) ([]byte, error) {
	w, err := x.svc.Working(x.ident(b.key), fault.SubjectKey, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	n := w.Attributes().Algorithm.KeyLen()
	if b.flag == '0' || b.flag == '1' && n != 16 || b.flag == '2' && n != 24 {
		return nil, errCode("05", "key length flag does not match the key")
	}
	if b.kcvType == '0' {
		kcv, err := ops.FullCheckValue(w)
		if err != nil {
			return nil, err
		}
		return appendHex(nil, kcv), nil
	}
	return []byte(w.KCV()), nil
}
