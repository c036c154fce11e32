package ops

// Per-request PIN keys: DUKPT PIN keys derived from a BDK and a KSN, and
// dynamic PEKs carried as TR-31 key blocks under a stored KEK ("Using Dynamic
// Keys"). Both are derived or unwrapped for one request and zeroed after it.

import (
	"payhsm/fault"
	"payhsm/hsm/dukpt"
	"payhsm/keyspec"
)

var dukptTypes = map[keyspec.Algorithm]dukpt.KeyType{
	keyspec.TDES2Key: dukpt.TDES2, keyspec.TDES3Key: dukpt.TDES3,
	keyspec.AES128: dukpt.AES128, keyspec.AES192: dukpt.AES192, keyspec.AES256: dukpt.AES256,
}

// dukptPinKey derives the PIN encryption key of transaction dk.KSN from the
// BDK w (the request's key subj on side): TDES DUKPT (ANSI X9.24-1-2009, PIN
// variant) for a TDES_2KEY BDK, AES DUKPT (ANSI X9.24-3-2017, key usage PIN
// encryption) for an AES BDK.
func (s *Service) dukptPinKey(w *WorkingKey, subj fault.Subject, side fault.Side, dk *PinDukpt, use keyspec.Use) (pinKey, error) {
	if err := RequireUse(w, use, subj, side); err != nil {
		return pinKey{}, err
	}
	bdkAlg := w.Record.Attributes.Algorithm
	typ := dk.DerivationType
	if typ == "" {
		typ = bdkAlg
	}
	var key []byte
	if bdkAlg.IsTDES() {
		if typ != keyspec.TDES2Key {
			return pinKey{}, about(fault.SubjectDukptDerivationType, side, "a TDES_2KEY BDK derives TDES_2KEY keys only")
		}
		k, err := dukpt.ParseTDESKSN(dk.KSN)
		if err != nil {
			f := fault.Wrap(fault.Validation, "a TDES DUKPT key serial number is 10 bytes with a usable transaction counter", err)
			f.Subject, f.Side = fault.SubjectKeySerialNumber, side
			return pinKey{}, f
		}
		key, err = dukpt.TDESKey(w.Material, k, dukpt.PINVariant)
		if err != nil {
			return pinKey{}, fault.Internalf("TDES DUKPT PIN key", err)
		}
	} else {
		wt, ok := dukptTypes[typ]
		if !ok {
			return pinKey{}, about(fault.SubjectDukptDerivationType, side, "unsupported derivation type %s", typ)
		}
		if keyspec.Strength(typ) > keyspec.Strength(bdkAlg) {
			return pinKey{}, about(fault.SubjectDukptDerivationType, side, "%s is stronger than the %s BDK", typ, bdkAlg)
		}
		k, err := dukpt.ParseAESKSN(dk.KSN)
		if err != nil {
			f := fault.Wrap(fault.Validation, "an AES DUKPT key serial number is 12 bytes with a usable transaction counter", err)
			f.Subject, f.Side = fault.SubjectKeySerialNumber, side
			return pinKey{}, f
		}
		key, err = dukpt.AESKey(w.Material, k, dukpt.UsagePINEncryption, wt)
		if err != nil {
			return pinKey{}, fault.Internalf("AES DUKPT PIN key", err)
		}
	}
	b, err := symmetricBlock(typ, key)
	if err != nil {
		clear(key)
		return pinKey{}, fault.Internalf("DUKPT PIN key schedule", err)
	}
	return pinKey{block: b, arn: w.ARN, kcv: w.KCV(), done: func() { clear(key) }}, nil
}

// wrappedPinKey opens a dynamic PEK (wk): a TR-31 key block under the KEK w
// (the request's key subj on side), or a key agreed by ECDH with the K3 key
// pair w. It must be a P0 TDES or AES key whose modes of use allow the
// direction: decrypt for an incoming PIN (mode B or D), encrypt for an
// outgoing one (B or E).
func (s *Service) wrappedPinKey(w *WorkingKey, subj fault.Subject, side fault.Side, wk *PinWrappedKey, use keyspec.Use) (pinKey, error) {
	d, release, err := s.wrappedKey(w, subj, side, wk)
	if err != nil {
		return pinKey{}, err
	}
	if err := RequireUse(d, use, fault.SubjectWrappedKey, side); err != nil {
		release()
		return pinKey{}, err
	}
	return pinKey{block: d.Block, arn: w.ARN, kcv: d.KCV(), done: release}, nil
}
