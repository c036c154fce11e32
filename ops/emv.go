package ops

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/emv"
	"payhsm/keyspec"
)

// EmvOption is the ICC master key derivation option (EMV 4.4 Book 2 A1.4).
type EmvOption uint8

// ICC master key derivation options.
const (
	EmvOptionA EmvOption = iota + 1 // A1.4.1: from the 16 rightmost digits of PAN || PSN
	EmvOptionB                      // A1.4.2: from a SHA-1 of PAN || PSN (PANs over 16 digits)
)

// option is the hsm/emv option of o; its fault is about side's
// SubjectMajorKeyDerivationMode.
func (o EmvOption) option(side fault.Side) (emv.Option, error) {
	switch o {
	case EmvOptionA:
		return emv.OptionA, nil
	case EmvOptionB:
		return emv.OptionB, nil
	}
	return 0, about(fault.SubjectMajorKeyDerivationMode, side, "must be option A or option B")
}

// EmvScheme is an EMV session key derivation: that of application
// cryptograms (the SessionKeyDerivation union) and of secure messaging.
type EmvScheme uint8

// Session key derivations.
const (
	// EmvCommon: the EMV common session key (Book 2 A1.3.1).
	EmvCommon EmvScheme = iota + 1
	// EmvMastercard: Mastercard SKD (the common session key with R = ATC || '0000' || UN).
	EmvMastercard
	// EmvEMV2000: the EMV 2000 tree derivation.
	EmvEMV2000
	// EmvAmex: the ICC master key used directly (AEIPS).
	EmvAmex
	// EmvVisa: the ICC master key used directly (Visa CVN10).
	EmvVisa
	// EmvUnionPay: the UnionPay (PBOC) ATC derivation.
	EmvUnionPay
)

var emvSchemes = [...]emv.Scheme{EmvCommon: emv.SchemeEMVCommon, EmvMastercard: emv.SchemeMastercard, EmvEMV2000: emv.SchemeEMV2000,
	EmvAmex: emv.SchemeAmex, EmvVisa: emv.SchemeVisa, EmvUnionPay: emv.SchemeUnionPay}

// scheme is the hsm/emv scheme of e.
func (e EmvScheme) scheme() (emv.Scheme, bool) {
	if int(e) >= len(emvSchemes) || emvSchemes[e] == 0 {
		return 0, false
	}
	return emvSchemes[e], true
}

// cardNumbers checks a PAN and a PAN sequence number of side.
func cardNumbers(side fault.Side, pan, psn string) error {
	if len(pan) < 12 || len(pan) > 19 || !isDigits(pan) {
		return about(fault.SubjectPAN, side, "must be 12 to 19 digits")
	}
	if len(psn) != 2 || !isDigits(psn) {
		return about(fault.SubjectPSN, side, "must be 2 digits")
	}
	return nil
}

// fixed checks that b, the input subj of side, is n bytes.
func fixed(subj fault.Subject, side fault.Side, b []byte, n int) error {
	if len(b) != n {
		return about(subj, side, "must be %d bytes", n)
	}
	return nil
}

// EMVSession is a SessionKeyDerivation: the scheme and the card and
// transaction values it needs (ATC for EMV common, Mastercard, EMV 2000 and
// UnionPay; UN for Mastercard). Hex values are as on the wire.
type EMVSession struct {
	Scheme emv.Scheme
	PAN    string // digits
	PSN    string // two digits
	ATC    string // 4 hex digits
	UN     string // 8 hex digits (Mastercard)
	Field  string // request member of the union, for errors
}

// AuthRequestCryptogramInput is the common input of Generate- and
// VerifyAuthRequestCryptogram.
type AuthRequestCryptogramInput struct {
	KeyIdentifier   string
	TransactionData string // hex, padded by the caller (zero-padded here when not whole blocks)
	MajorKeyMode    string // EMV_OPTION_A | EMV_OPTION_B
	Session         EMVSession
}

// ARPCRequest asks VerifyAuthRequestCryptogram for an ARPC: Method 1 with a
// 2-byte ARC, or method 2 with a 4-byte CSU and 0..8 bytes of proprietary
// authentication data (hex).
type ARPCRequest struct {
	Method                        int
	AuthResponseCode              string
	CardStatusUpdate              string
	ProprietaryAuthenticationData string
}

// CryptoResult is a key-bound cryptographic result: the key used, its check
// value and the value produced (hex or digits; empty for a bare verify).
type CryptoResult struct {
	KeyARN string
	KCV    string
	Value  string
}

// emvMasterKeyUsages is the rule for VerifyAuthRequestCryptogram and
// GenerateAuthRequestCryptogram (guide: Valid keys, VerifyAuthRequestCryptogram).
var emvACUsages = []keyspec.KeyUsage{keyspec.E0}

var tdes2 = []keyspec.Algorithm{keyspec.TDES2Key}

func deriveKey(m keyspec.ModesOfUse) bool { return m.DeriveKey }

// MajorKeyOption parses a MajorKeyDerivationMode.
func MajorKeyOption(field, mode string) (emv.Option, error) {
	switch mode {
	case "EMV_OPTION_A":
		return emv.OptionA, nil
	case "EMV_OPTION_B":
		return emv.OptionB, nil
	}
	return 0, fault.FieldInvalid(field, "must be EMV_OPTION_A or EMV_OPTION_B")
}

// hexField decodes a hex request member of exactly n bytes (n < 0: any
// length, n = 0: possibly empty up to max).
func hexField(field, s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fault.FieldInvalid(field, "must be hexadecimal with an even number of digits")
	}
	if n > 0 && len(b) != n {
		return nil, fault.FieldInvalid(field, "must be %d hexadecimal digits", 2*n)
	}
	return b, nil
}

// atc parses a 2-byte ATC given as 1 to 4 hex digits (right-justified).
func atcField(field, s string) ([2]byte, error) {
	var a [2]byte
	if len(s) < 1 || len(s) > 4 {
		return a, fault.FieldInvalid(field, "must be 1 to 4 hexadecimal digits")
	}
	b, err := hexField(field, strings.Repeat("0", 4-len(s))+s, 2)
	if err != nil {
		return a, err
	}
	return [2]byte(b), nil
}

// cardDigits checks a PAN and a PAN sequence number.
func cardDigits(field, pan, psn string) error {
	if len(pan) < 12 || len(pan) > 19 || !isDigits(pan) {
		return fault.FieldInvalid(field+".PrimaryAccountNumber", "must be 12 to 19 digits")
	}
	if len(psn) != 2 || !isDigits(psn) {
		return fault.FieldInvalid(field+".PanSequenceNumber", "must be 2 digits")
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// acKey derives the application-cryptogram key of a card from the issuer
// master key w. The caller zeroes the result.
func acKey(w *WorkingKey, opt emv.Option, sess EMVSession) ([]byte, error) {
	if err := cardDigits(sess.Field, sess.PAN, sess.PSN); err != nil {
		return nil, err
	}
	var atc [2]byte
	var un [4]byte
	var err error
	switch sess.Scheme {
	case emv.SchemeEMVCommon, emv.SchemeMastercard, emv.SchemeEMV2000, emv.SchemeUnionPay:
		if atc, err = atcField(sess.Field+".ApplicationTransactionCounter", sess.ATC); err != nil {
			return nil, err
		}
	}
	if sess.Scheme == emv.SchemeMastercard {
		b, err := hexField(sess.Field+".UnpredictableNumber", sess.UN, 4)
		if err != nil {
			return nil, err
		}
		un = [4]byte(b)
	}
	mk, err := emv.ICCMasterKeyBlock(w.Block, opt, sess.PAN, sess.PSN)
	if err != nil {
		return nil, fault.Internalf("ICC master key derivation", err)
	}
	defer clear(mk)
	sk, err := emv.ACSessionKey(mk, sess.Scheme, atc, un)
	if err != nil {
		return nil, fault.Internalf("session key derivation", err)
	}
	return sk, nil
}

// arqc computes the application cryptogram of in under the key it names,
// after the key-separation checks.
func (s *Service) arqc(in AuthRequestCryptogramInput, what string) (*WorkingKey, []byte, []byte, error) {
	w, err := s.Working(in.KeyIdentifier, "KeyIdentifier")
	if err != nil {
		return nil, nil, nil, err
	}
	if err := Require(w, "KeyIdentifier", what, emvACUsages, tdes2, deriveKey); err != nil {
		return nil, nil, nil, err
	}
	opt, err := MajorKeyOption("MajorKeyDerivationMode", in.MajorKeyMode)
	if err != nil {
		return nil, nil, nil, err
	}
	data, err := hexField("TransactionData", in.TransactionData, -1)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(data) == 0 {
		return nil, nil, nil, fault.FieldInvalid("TransactionData", "must not be empty")
	}
	sk, err := acKey(w, opt, in.Session)
	if err != nil {
		return nil, nil, nil, err
	}
	// The guide: callers pad (ISO 9797-1 method 2 for most schemes, method 1
	// for Visa CVN10); data that is not whole blocks is padded with zeros.
	ac, err := emv.Cryptogram(sk, data, emv.PadMethod1)
	if err != nil {
		clear(sk)
		return nil, nil, nil, fault.Internalf("application cryptogram", err)
	}
	return w, sk, ac, nil
}

// GenerateAuthRequestCryptogram computes the ARQC a card would send (for
// tests and card simulation).
func (s *Service) GenerateAuthRequestCryptogram(in AuthRequestCryptogramInput) (*CryptoResult, error) {
	w, sk, ac, err := s.arqc(in, "GenerateAuthRequestCryptogram")
	if err != nil {
		return nil, err
	}
	clear(sk)
	return &CryptoResult{KeyARN: w.ARN, KCV: w.KCV(), Value: strings.ToUpper(hex.EncodeToString(ac))}, nil
}

// VerifyAuthRequestCryptogram verifies an ARQC and, when arpc is not nil,
// returns the ARPC of the requested method computed under the same key.
func (s *Service) VerifyAuthRequestCryptogram(in AuthRequestCryptogramInput, arqcHex string, arpc *ARPCRequest) (*CryptoResult, error) {
	got, err := hexField("AuthRequestCryptogram", arqcHex, 8)
	if err != nil {
		return nil, err
	}
	var arc [2]byte
	var csu [4]byte
	var pad []byte
	if arpc != nil {
		switch arpc.Method {
		case 1:
			b, err := hexField("AuthResponseAttributes.ArpcMethod1.AuthResponseCode", arpc.AuthResponseCode, 2)
			if err != nil {
				return nil, err
			}
			arc = [2]byte(b)
		case 2:
			b, err := hexField("AuthResponseAttributes.ArpcMethod2.CardStatusUpdate", arpc.CardStatusUpdate, 4)
			if err != nil {
				return nil, err
			}
			csu = [4]byte(b)
			if pad, err = hexField("AuthResponseAttributes.ArpcMethod2.ProprietaryAuthenticationData", arpc.ProprietaryAuthenticationData, -1); err != nil {
				return nil, err
			}
			if len(pad) > 8 {
				return nil, fault.FieldInvalid("AuthResponseAttributes.ArpcMethod2.ProprietaryAuthenticationData", "must be at most 16 hexadecimal digits")
			}
		default:
			return nil, fault.FieldInvalid("AuthResponseAttributes", "unknown ARPC method")
		}
	}
	w, sk, want, err := s.arqc(in, "VerifyAuthRequestCryptogram")
	if err != nil {
		return nil, err
	}
	defer clear(sk)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return nil, fault.Mismatch(fault.ReasonInvalidAuthCryptogram, "ARQC verification failed")
	}
	out := &CryptoResult{KeyARN: w.ARN, KCV: w.KCV()}
	if arpc != nil {
		var r []byte
		if arpc.Method == 1 {
			r, err = emv.ARPCMethod1(sk, [8]byte(got), arc)
		} else {
			r, err = emv.ARPCMethod2(sk, [8]byte(got), csu, pad)
		}
		if err != nil {
			return nil, fault.Internalf("ARPC", err)
		}
		out.Value = strings.ToUpper(hex.EncodeToString(r))
	}
	return out, nil
}
