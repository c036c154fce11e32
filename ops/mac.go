package ops

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/cmac"
	"payhsm/hsm/dukpt"
	"payhsm/hsm/mac"
	"payhsm/keyspec"
)

// MacAttributes is the AWS MacAttributes union: exactly one member is set.
type MacAttributes struct {
	Algorithm              string // ISO9797_ALGORITHM1, ISO9797_ALGORITHM3, CMAC, HMAC, HMAC_SHA224..512, AS2805_4_1
	DukptIso9797Algorithm1 *DukptMac
	DukptIso9797Algorithm3 *DukptMac
	DukptCmac              *DukptMac
	EmvMac                 *EmvMac
}

// DukptMac is a MAC key derived from a BDK.
type DukptMac struct {
	KSN            string
	Variant        string // REQUEST, RESPONSE, BIDIRECTIONAL
	DerivationType string // AES DUKPT working key type
}

// EmvMac is an EMV secure-messaging integrity session key derived from a
// TR31_E2 issuer master key (see data_emv.go).
type EmvMac struct {
	MajorKeyDerivationMode   string // EMV_OPTION_A or EMV_OPTION_B
	PAN, PSN                 string // digits
	SessionKeyDerivationMode string // EMV_COMMON_SESSION_KEY, MASTERCARD_SESSION_KEY, EMV2000, AMEX, VISA, UNION_PAY
	// SessionKeyDerivationValue: exactly one, as the mode needs.
	ApplicationCryptogram string // 16 hex digits (EMV common, Mastercard)
	ATC                   string // 4 hex digits (the others)
}

// GenerateMacInput is GenerateMac.
type GenerateMacInput struct {
	KeyIdentifier string
	MessageData   string // hex
	Attributes    MacAttributes
	MacLength     int         // bytes; 0 = the algorithm's full length
	WrappedKey    *DynamicKey // the MAC key, under the KEK KeyIdentifier (not in the AWS model)
}

// VerifyMacInput is VerifyMac.
type VerifyMacInput struct {
	KeyIdentifier string
	MessageData   string
	Mac           string // hex
	Attributes    MacAttributes
	MacLength     int
	WrappedKey    *DynamicKey // the MAC key, under the KEK KeyIdentifier (not in the AWS model)
}

// MacOutput is the key used and, for GenerateMac, the MAC (hex).
type MacOutput struct {
	KeyARN, KCV string
	Mac         string
}

// minVerifyMac is the shortest MAC VerifyMac compares (ISO 9797-1 note:
// a MAC shorter than 32 bits offers too little protection).
const minVerifyMac = 4

// GenerateMac computes the MAC of MessageData.
func (s *Service) GenerateMac(in GenerateMacInput) (*MacOutput, error) {
	arn, kcv, full, err := s.computeMac(in.KeyIdentifier, in.WrappedKey, in.MessageData, in.Attributes, "GenerationAttributes", true)
	if err != nil {
		return nil, err
	}
	n := len(full)
	if in.MacLength != 0 {
		if in.MacLength > n {
			return nil, fault.FieldInvalid("MacLength", "at most %d bytes for this algorithm", n)
		}
		n = in.MacLength
	}
	return &MacOutput{KeyARN: arn, KCV: kcv, Mac: strings.ToUpper(hex.EncodeToString(full[:n]))}, nil
}

// VerifyMac recomputes the MAC of MessageData and compares it, in constant
// time, with Mac (truncated to MacLength, or to Mac's own length).
func (s *Service) VerifyMac(in VerifyMacInput) (*MacOutput, error) {
	given, err := dataHex("Mac", in.Mac)
	if err != nil {
		return nil, err
	}
	arn, kcv, full, err := s.computeMac(in.KeyIdentifier, in.WrappedKey, in.MessageData, in.Attributes, "VerificationAttributes", false)
	if err != nil {
		return nil, err
	}
	n := len(given)
	if in.MacLength != 0 && in.MacLength != n {
		return nil, fault.FieldInvalid("Mac", "must be MacLength (%d) bytes", in.MacLength)
	}
	if n < minVerifyMac || n > len(full) {
		return nil, fault.FieldInvalid("Mac", "must be %d to %d bytes for this algorithm", minVerifyMac, len(full))
	}
	if subtle.ConstantTimeCompare(full[:n], given) != 1 {
		return nil, fault.Mismatch(fault.ReasonInvalidMAC, "MAC verification failed")
	}
	return &MacOutput{KeyARN: arn, KCV: kcv}, nil
}

var (
	tdesAlgorithms = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key}
	hmacAlgorithms = []keyspec.Algorithm{keyspec.HMACSHA224, keyspec.HMACSHA256, keyspec.HMACSHA384, keyspec.HMACSHA512}
	hmacHashes     = map[keyspec.Algorithm]mac.Hash{keyspec.HMACSHA224: mac.SHA224, keyspec.HMACSHA256: mac.SHA256,
		keyspec.HMACSHA384: mac.SHA384, keyspec.HMACSHA512: mac.SHA512}
)

// computeMac checks key separation and returns the full-length MAC.
func (s *Service) computeMac(ident string, dk *DynamicKey, msgHex string, a MacAttributes, attr string, generate bool) (arn, kcv string, full []byte, err error) {
	w, field, arn, release, err := s.requestKey(ident, "KeyIdentifier", dk, "WrappedKey")
	if err != nil {
		return "", "", nil, err
	}
	defer release()
	msg, err := dataHex("MessageData", msgHex)
	if err != nil {
		return "", "", nil, err
	}
	defer clear(msg)
	op := "VerifyMac"
	modes := func(m keyspec.ModesOfUse) bool { return m.Verify }
	if generate {
		op = "GenerateMac"
		modes = func(m keyspec.ModesOfUse) bool { return m.Generate }
	}
	req := func(u keyspec.KeyUsage, algs []keyspec.Algorithm, what string) error {
		return Require(w, field, op+" "+what, []keyspec.KeyUsage{u}, algs, modes)
	}
	switch {
	case a.Algorithm != "":
		switch a.Algorithm {
		case "ISO9797_ALGORITHM1":
			if err = req(keyspec.M1, tdesAlgorithms, a.Algorithm); err == nil {
				full, err = mac.Algorithm1(w.Block, msg, mac.Method1)
			}
		case "ISO9797_ALGORITHM3":
			if err = req(keyspec.M3, tdesAlgorithms, a.Algorithm); err == nil {
				full, err = mac.Algorithm3Ciphers(w.Left, w.Block, msg, mac.Method1)
			}
		case "CMAC":
			if err = req(keyspec.M6, dataAlgorithms, a.Algorithm); err == nil {
				full = cmac.Sum(w.Block, msg)
			}
		case "AS2805_4_1":
			if err = req(keyspec.M0, tdesAlgorithms, a.Algorithm); err == nil {
				full, err = mac.AS2805(w.Block, msg)
			}
		case "HMAC", "HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512":
			if err = req(keyspec.M7, hmacAlgorithms, a.Algorithm); err != nil {
				break
			}
			alg := w.Record.Attributes.Algorithm
			if a.Algorithm != "HMAC" && a.Algorithm != string(alg) {
				return "", "", nil, fault.FieldInvalid(attr+".Algorithm", "%s does not match the key's algorithm %s", a.Algorithm, alg)
			}
			full, err = mac.HMAC(hmacHashes[alg], w.Material, msg)
		default:
			return "", "", nil, fault.FieldInvalid(attr+".Algorithm", "unknown MAC algorithm")
		}
	case a.DukptIso9797Algorithm1 != nil, a.DukptIso9797Algorithm3 != nil, a.DukptCmac != nil:
		full, err = dukptMac(w, msg, a, attr, func() error {
			return Require(w, field, op+" with DUKPT", []keyspec.KeyUsage{keyspec.B0}, bdkAlgorithms, deriveMode)
		})
	case a.EmvMac != nil:
		if err = Require(w, field, op+" with EmvMac", []keyspec.KeyUsage{keyspec.E2}, tdes2, deriveKey); err == nil {
			full, err = emvMac(w, attr+".EmvMac", a.EmvMac, msg)
		}
	default:
		return "", "", nil, fault.FieldInvalid(attr, "exactly one MAC attribute is required")
	}
	if err != nil {
		if f := fault.As(err); f.Kind == fault.Internal {
			return "", "", nil, fault.Internalf("MAC", err)
		}
		return "", "", nil, err
	}
	return arn, w.KCV(), full, nil
}

// dukptMac computes a DUKPT MAC: the MAC key of the request's variant,
// derived from the BDK, then ISO 9797-1 algorithm 1 or 3 (padding method 1;
// TDES working key) or CMAC.
func dukptMac(w *WorkingKey, msg []byte, a MacAttributes, attr string, require func() error) ([]byte, error) {
	if err := require(); err != nil {
		return nil, err
	}
	d, member, defType := a.DukptCmac, "DukptCmac", bdkKeyType(w.Record.Attributes.Algorithm)
	switch {
	case a.DukptIso9797Algorithm1 != nil:
		d, member, defType = a.DukptIso9797Algorithm1, "DukptIso9797Algorithm1", dukpt.TDES2
	case a.DukptIso9797Algorithm3 != nil:
		d, member, defType = a.DukptIso9797Algorithm3, "DukptIso9797Algorithm3", dukpt.TDES2
	}
	field := attr + "." + member
	key, t, err := dukptWorkingKey(w, field, d.KSN, d.DerivationType, d.Variant, dukptMAC, defType)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if member != "DukptCmac" && t != dukpt.TDES2 && t != dukpt.TDES3 {
		return nil, fault.FieldInvalid(field+".DukptDerivationType", "ISO 9797-1 MAC algorithms need a TDES working key")
	}
	b, err := workingBlock(key, t)
	if err != nil {
		return nil, err
	}
	switch member {
	case "DukptIso9797Algorithm1":
		return mac.Algorithm1(b, msg, mac.Method1)
	case "DukptIso9797Algorithm3":
		return mac.Algorithm3(key, b, msg, mac.Method1)
	}
	return cmac.Sum(b, msg), nil
}
