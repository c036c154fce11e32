package ops

import (
	"crypto/subtle"

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
// UnionPay; UN for Mastercard).
type EMVSession struct {
	Scheme EmvScheme
	PAN    string // digits
	PSN    string // two digits
	ATC    []byte // 2 bytes
	UN     []byte // 4 bytes (Mastercard)
}

// AuthRequestCryptogramInput is the common input of Generate- and
// VerifyAuthRequestCryptogram.
type AuthRequestCryptogramInput struct {
	KeyIdentifier   string
	TransactionData []byte // padded by the caller (zero-padded here when not whole blocks)
	MajorKeyMode    EmvOption
	Session         EMVSession
}

// ARPCRequest asks VerifyAuthRequestCryptogram for an ARPC: Method 1 with a
// 2-byte ARC, or method 2 with a 4-byte CSU and 0..8 bytes of proprietary
// authentication data.
type ARPCRequest struct {
	Method                        int
	AuthResponseCode              []byte
	CardStatusUpdate              []byte
	ProprietaryAuthenticationData []byte
}

// CryptoResult is a key-bound card validation result: the key used, its
// check value and the digits produced (empty for a bare verify).
type CryptoResult struct {
	KeyARN string
	KCV    string
	Value  string
}

// CryptogramResult is a key-bound cryptogram: the key used, its check value
// and the cryptogram produced (nil for a bare verify).
type CryptogramResult struct {
	KeyARN     string
	KCV        string
	Cryptogram []byte
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// acKeys derives the keys of a card from the issuer master key w: the ICC
// master key MK-AC and the application-cryptogram session key of the
// scheme. The caller zeroes both.
func acKeys(w *WorkingKey, opt emv.Option, sess EMVSession) (mk, sk []byte, err error) {
	const side = fault.SideNone
	if err := cardNumbers(side, sess.PAN, sess.PSN); err != nil {
		return nil, nil, err
	}
	scheme, ok := sess.Scheme.scheme()
	if !ok {
		return nil, nil, about(fault.SubjectSessionDerivation, side, "unknown session key derivation")
	}
	var atc [2]byte
	var un [4]byte
	switch scheme {
	case emv.SchemeEMVCommon, emv.SchemeMastercard, emv.SchemeEMV2000, emv.SchemeUnionPay:
		if err := fixed(fault.SubjectATC, side, sess.ATC, 2); err != nil {
			return nil, nil, err
		}
		atc = [2]byte(sess.ATC)
	}
	if scheme == emv.SchemeMastercard {
		if err := fixed(fault.SubjectUnpredictableNumber, side, sess.UN, 4); err != nil {
			return nil, nil, err
		}
		un = [4]byte(sess.UN)
	}
	mk, err = emv.ICCMasterKeyBlock(w.Block, opt, sess.PAN, sess.PSN)
	if err != nil {
		return nil, nil, fault.Internalf("ICC master key derivation", err)
	}
	sk, err = emv.ACSessionKey(mk, scheme, atc, un)
	if err != nil {
		clear(mk)
		return nil, nil, fault.Internalf("session key derivation", err)
	}
	return mk, sk, nil
}

// arpcMethod1Key is the key of ARPC method 1 for scheme: the ICC master key
// MK-AC for the Mastercard session key derivation (M/Chip CVN 16/17, as
// pyemv's HSM-checked MasterCardCVN16/17, jPOS JCESecurityModule's MCHIP
// scheme and the payShield KQ scheme 1 compute it), the session key for
// every other scheme (EMV Book 2 8.2.1; for Visa and Amex the two are the
// same key). docs/card-algorithms.md records the sources.
func arpcMethod1Key(scheme EmvScheme, mk, sk []byte) []byte {
	if scheme == EmvMastercard {
		return mk
	}
	return sk
}

// cardKeys are the ICC master key and the session key of one transaction.
type cardKeys struct{ mk, sk []byte }

func (k *cardKeys) clear() {
	clear(k.mk)
	clear(k.sk)
}

// arqc computes the application cryptogram of in under the key it names,
// after the key-separation checks.
// The caller releases the working key and clears the card keys it returns.
func (s *Service) arqc(in AuthRequestCryptogramInput, use keyspec.Use) (_ *WorkingKey, _ *cardKeys, _ []byte, err error) {
	const subj, side = fault.SubjectKey, fault.SideNone
	w, err := s.Working(in.KeyIdentifier, subj, side)
	if err != nil {
		return nil, nil, nil, err
	}
	defer releaseOnError(w, &err)
	if err := RequireUse(w, use, subj, side); err != nil {
		return nil, nil, nil, err
	}
	opt, err := in.MajorKeyMode.option(side)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(in.TransactionData) == 0 {
		return nil, nil, nil, about(fault.SubjectTransactionData, side, "must not be empty")
	}
	mk, sk, err := acKeys(w, opt, in.Session)
	if err != nil {
		return nil, nil, nil, err
	}
	keys := &cardKeys{mk: mk, sk: sk}
	// The guide: callers pad (ISO 9797-1 method 2 for most schemes, method 1
	// for Visa CVN10); data that is not whole blocks is padded with zeros.
	ac, err := emv.Cryptogram(sk, in.TransactionData, emv.PadMethod1)
	if err != nil {
		keys.clear()
		return nil, nil, nil, fault.Internalf("application cryptogram", err)
	}
	return w, keys, ac, nil
}

// GenerateAuthRequestCryptogram computes the ARQC a card would send (for
// tests and card simulation).
func (s *Service) GenerateAuthRequestCryptogram(in AuthRequestCryptogramInput) (*CryptogramResult, error) {
	w, keys, ac, err := s.arqc(in, keyspec.UseGenerateAuthRequestCryptogram)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	keys.clear()
	return &CryptogramResult{KeyARN: w.ARN, KCV: w.KCV(), Cryptogram: ac}, nil
}

// VerifyAuthRequestCryptogram verifies the ARQC got and, when arpc is not
// nil, returns the ARPC of the requested method: method 1 under the key
// arpcMethod1Key chooses, method 2 under the session key.
func (s *Service) VerifyAuthRequestCryptogram(in AuthRequestCryptogramInput, got []byte, arpc *ARPCRequest) (*CryptogramResult, error) {
	const side = fault.SideNone
	if err := fixed(fault.SubjectAuthRequestCryptogram, side, got, 8); err != nil {
		return nil, err
	}
	var arc [2]byte
	var csu [4]byte
	if arpc != nil {
		switch arpc.Method {
		case 1:
			if err := fixed(fault.SubjectAuthResponseCode, side, arpc.AuthResponseCode, 2); err != nil {
				return nil, err
			}
			arc = [2]byte(arpc.AuthResponseCode)
		case 2:
			if err := fixed(fault.SubjectCardStatusUpdate, side, arpc.CardStatusUpdate, 4); err != nil {
				return nil, err
			}
			csu = [4]byte(arpc.CardStatusUpdate)
			if len(arpc.ProprietaryAuthenticationData) > 8 {
				return nil, about(fault.SubjectProprietaryAuthData, side, "must be at most 8 bytes")
			}
		default:
			return nil, about(fault.SubjectAuthResponse, side, "unknown ARPC method")
		}
	}
	w, keys, want, err := s.arqc(in, keyspec.UseVerifyAuthRequestCryptogram)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	defer keys.clear()
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return nil, fault.Mismatch(fault.ReasonInvalidAuthCryptogram, "ARQC verification failed")
	}
	out := &CryptogramResult{KeyARN: w.ARN, KCV: w.KCV()}
	if arpc != nil {
		var r []byte
		if arpc.Method == 1 {
			r, err = emv.ARPCMethod1(arpcMethod1Key(in.Session.Scheme, keys.mk, keys.sk), [8]byte(got), arc)
		} else {
			r, err = emv.ARPCMethod2(keys.sk, [8]byte(got), csu, arpc.ProprietaryAuthenticationData)
		}
		if err != nil {
			return nil, fault.Internalf("ARPC", err)
		}
		out.Cryptogram = r
	}
	return out, nil
}
