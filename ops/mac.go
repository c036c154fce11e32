package ops

import (
	"crypto/subtle"
	"fmt"

	"payhsm/fault"
	"payhsm/hsm/cmac"
	"payhsm/hsm/dukpt"
	"payhsm/hsm/mac"
	"payhsm/keyspec"
)

// MacAlgorithm is a MAC algorithm of a key used directly.
type MacAlgorithm uint8

// MAC algorithms.
const (
	MacISO9797Alg1 MacAlgorithm = iota + 1 // ISO/IEC 9797-1 MAC algorithm 1, padding method 1 (TDES)
	MacISO9797Alg3                         // ISO/IEC 9797-1 MAC algorithm 3, padding method 1 (TDES)
	MacCMAC                                // CMAC (SP 800-38B; TDES or AES)
	MacHMAC                                // HMAC with the key's own hash
	MacHMACSHA224                          // HMAC with SHA-224 (the key's hash must match)
	MacHMACSHA256
	MacHMACSHA384
	MacHMACSHA512
	MacAS2805 // AS2805.4.1 (TDES)
)

// hmacAlgorithm is the key algorithm an HMAC algorithm names ("" for MacHMAC).
var hmacAlgorithm = map[MacAlgorithm]keyspec.Algorithm{MacHMACSHA224: keyspec.HMACSHA224, MacHMACSHA256: keyspec.HMACSHA256,
	MacHMACSHA384: keyspec.HMACSHA384, MacHMACSHA512: keyspec.HMACSHA512}

// MacAttributes is how a MAC is computed (the AWS MacAttributes union):
// exactly one member is set.
type MacAttributes struct {
	Algorithm              MacAlgorithm // a key used directly
	DukptIso9797Algorithm1 *DukptMac
	DukptIso9797Algorithm3 *DukptMac
	DukptCmac              *DukptMac
	EmvMac                 *EmvMac
}

// DukptMac is a MAC key derived from a BDK.
type DukptMac struct {
	KSN            []byte
	Variant        DukptVariant
	DerivationType keyspec.Algorithm // AES DUKPT working key type; "" = the method's default
}

// EmvMac is an EMV secure-messaging integrity session key derived from a
// TR31_E2 issuer master key (see data_emv.go).
type EmvMac struct {
	MajorKeyMode  EmvOption
	PAN, PSN      string // digits
	SessionScheme EmvScheme
	// The session key derivation value: exactly one, as the scheme needs.
	ApplicationCryptogram []byte // 8 bytes (EMV common, Mastercard)
	ATC                   []byte // 2 bytes (the others)
}

// GenerateMacInput is GenerateMac.
type GenerateMacInput struct {
	KeyIdentifier string
	MessageData   []byte
	Attributes    MacAttributes
	MacLength     int         // bytes; 0 = the algorithm's full length
	WrappedKey    *DynamicKey // the MAC key, under the KEK KeyIdentifier (not in the AWS model)
}

// VerifyMacInput is VerifyMac.
type VerifyMacInput struct {
	KeyIdentifier string
	MessageData   []byte
	Mac           []byte
	Attributes    MacAttributes
	MacLength     int
	WrappedKey    *DynamicKey // the MAC key, under the KEK KeyIdentifier (not in the AWS model)
}

// MacOutput is the key used and, for GenerateMac, the MAC.
type MacOutput struct {
	KeyARN, KCV string
	Mac         []byte
}

// macRoom is the most a MAC of a key used directly writes into its
// buffer's spare capacity: HMAC-SHA512's tag (CMAC works in two blocks,
// ISO 9797-1 in one).
const macRoom = 64

// minVerifyMac is the shortest MAC VerifyMac compares (ISO 9797-1 note:
// a MAC shorter than 32 bits offers too little protection).
const minVerifyMac = 4

// macResult is a GenerateMac result and room for its MAC, allocated
// together: the MACs of a key used directly write their tag into buf, so
// the result is one allocation of 96 bytes. 32 bytes hold every tag but
// HMAC-SHA384's and -SHA512's (which append into a slice of their own)
// and CMAC's working room (two AES blocks).
type macResult struct {
	out MacOutput
	buf [32]byte
}

// GenerateMac computes the MAC of MessageData.
func (s *Service) GenerateMac(in GenerateMacInput) (*MacOutput, error) {
	r := new(macResult)
	m, k, err := s.AppendMac(r.buf[:0], in)
	if err != nil {
		return nil, err
	}
	// Field by field: a struct copy into the heap object would take the
	// garbage collector's bulk write barrier while it marks.
	r.out.KeyARN, r.out.KCV, r.out.Mac = k.KeyARN, k.KCV, m
	return &r.out, nil
}

// AppendMac is GenerateMac for a caller that keeps the MAC in a buffer of
// its own (the host port's response, an HTTP response's room): it appends
// the MAC (MacLength bytes, or the algorithm's full length) to dst and,
// for a cached key used directly (ISO 9797-1 algorithms 1 and 3, CMAC,
// HMAC), allocates nothing when dst has 32 bytes of spare capacity (64
// for HMAC-SHA384 and -SHA512), which it may use as working room. On
// error dst is returned as it was.
func (s *Service) AppendMac(dst []byte, in GenerateMacInput) ([]byte, KeyUsed, error) {
	start := len(dst)
	out, k, err := s.computeMac(in.KeyIdentifier, in.WrappedKey, in.MessageData, in.Attributes, true, dst)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	n := len(out) - start
	if in.MacLength != 0 {
		if in.MacLength > n {
			return dst, KeyUsed{}, about(fault.SubjectMacLength, fault.SideNone, "at most %d bytes for this algorithm", n)
		}
		n = in.MacLength
	}
	return out[:start+n], k, nil
}

// VerifyMac recomputes the MAC of MessageData and compares it, in constant
// time, with Mac (truncated to MacLength, or to Mac's own length).
func (s *Service) VerifyMac(in VerifyMacInput) (*MacOutput, error) {
	k, err := s.CheckMac(nil, in)
	if err != nil {
		return nil, err
	}
	return &MacOutput{KeyARN: k.KeyARN, KCV: k.KCV}, nil
}

// CheckMac is VerifyMac without a result to allocate: it returns the key
// used. It recomputes the MAC in room's spare capacity (after its length)
// and zeroes the first macRoom bytes of that capacity, all it may have
// written, before it returns; with 32 bytes of room (64 for HMAC-SHA384
// and -SHA512) and a cached key used directly it allocates nothing. room
// may be nil.
func (s *Service) CheckMac(room []byte, in VerifyMacInput) (KeyUsed, error) {
	start := len(room)
	out, k, err := s.computeMac(in.KeyIdentifier, in.WrappedKey, in.MessageData, in.Attributes, false, room)
	if err != nil {
		return KeyUsed{}, err
	}
	// The MAC of the message is not left in the caller's buffer (nor its
	// working room), whether or not it matches.
	full := out[start:]
	defer clear(full[:min(cap(full), macRoom)])
	n := len(in.Mac)
	if in.MacLength != 0 && in.MacLength != n {
		return KeyUsed{}, about(fault.SubjectMAC, fault.SideNone, "must be MacLength (%d) bytes", in.MacLength)
	}
	if n < minVerifyMac || n > len(full) {
		return KeyUsed{}, about(fault.SubjectMAC, fault.SideNone, "must be %d to %d bytes for this algorithm", minVerifyMac, len(full))
	}
	if subtle.ConstantTimeCompare(full[:n], in.Mac) != 1 {
		return KeyUsed{}, fault.Mismatch(fault.ReasonInvalidMAC, "MAC verification failed")
	}
	return k, nil
}

var (
	hmacHashes = map[keyspec.Algorithm]mac.Hash{keyspec.HMACSHA224: mac.SHA224, keyspec.HMACSHA256: mac.SHA256,
		keyspec.HMACSHA384: mac.SHA384, keyspec.HMACSHA512: mac.SHA512}
)

// macNames name the algorithms in key-separation messages.
var macNames = map[MacAlgorithm]string{MacISO9797Alg1: "ISO 9797-1 MAC algorithm 1", MacISO9797Alg3: "ISO 9797-1 MAC algorithm 3",
	MacCMAC: "CMAC", MacHMAC: "HMAC", MacHMACSHA224: "HMAC-SHA224", MacHMACSHA256: "HMAC-SHA256", MacHMACSHA384: "HMAC-SHA384",
	MacHMACSHA512: "HMAC-SHA512", MacAS2805: "AS2805.4.1 MAC"}

func (a MacAlgorithm) String() string {
	if n, ok := macNames[a]; ok {
		return n
	}
	return fmt.Sprintf("MacAlgorithm(%d)", int(a))
}

// computeMac checks key separation and appends the full-length MAC to dst:
// the methods of a key used directly (ISO 9797-1 algorithms 1 and 3, CMAC,
// HMAC) compute it there, the others compute a new slice and copy it.
func (s *Service) computeMac(ident string, dk *DynamicKey, msg []byte, a MacAttributes, generate bool, dst []byte) (out []byte, used KeyUsed, err error) {
	const side = fault.SideNone
	if dk == nil && a.Algorithm == MacCMAC {
		if out, used, ok, err := s.peekCMAC(ident, msg, generate, dst); ok || err != nil {
			return out, used, err
		}
	}
	w, subj, arn, release, err := s.requestKey(ident, fault.SubjectKey, side, dk)
	if err != nil {
		return nil, KeyUsed{}, err
	}
	defer release()
	var tag []byte // the MAC of a method that does not append
	// req checks w against the rule of the MAC method (generate, verify).
	req := func(gen, ver keyspec.Use) error { return RequireUse(w, pick(generate, gen, ver), subj, side) }
	switch {
	case a.Algorithm != 0:
		switch a.Algorithm {
		case MacISO9797Alg1:
			if err = req(keyspec.UseGenerateMacISO9797Alg1, keyspec.UseVerifyMacISO9797Alg1); err == nil {
				out, err = mac.AppendAlgorithm1(dst, w.Block, msg, mac.Method1)
			}
		case MacISO9797Alg3:
			if err = req(keyspec.UseGenerateMacISO9797Alg3, keyspec.UseVerifyMacISO9797Alg3); err == nil {
				out, err = mac.AppendAlgorithm3(dst, w.Left, w.Block, msg, mac.Method1)
			}
		case MacCMAC:
			if err = req(keyspec.UseGenerateMacCMAC, keyspec.UseVerifyMacCMAC); err == nil {
				var k *cmac.Key
				if k, err = w.CMAC(); err == nil {
					out, err = k.Sum(dst, msg) // not cleared: this call holds a reference
				}
			}
		case MacAS2805:
			if err = req(keyspec.UseGenerateMacAS2805, keyspec.UseVerifyMacAS2805); err == nil {
				tag, err = mac.AS2805(w.Block, msg)
			}
		case MacHMAC, MacHMACSHA224, MacHMACSHA256, MacHMACSHA384, MacHMACSHA512:
			// The refusal names the MAC algorithm; the message is built only
			// for a refusal (a string per request otherwise).
			if u := pick(generate, keyspec.UseGenerateMacHMAC, keyspec.UseVerifyMacHMAC); !w.uses.Has(u) {
				op := pick(generate, "GenerateMac", "VerifyMac") + " with " + a.Algorithm.String()
				if err = requireUseAs(w, u, op, subj, side); err != nil {
					break
				}
			}
			alg := w.Record.Attributes.Algorithm
			if want, ok := hmacAlgorithm[a.Algorithm]; ok && want != alg {
				return nil, KeyUsed{}, about(fault.SubjectMacAlgorithm, side, "%v does not match the key's algorithm %s", a.Algorithm, alg)
			}
			var k *mac.HMACKey
			if k, err = w.HMAC(hmacHashes[alg]); err == nil {
				out, err = k.Sum(dst, msg)
			}
		default:
			return nil, KeyUsed{}, about(fault.SubjectMacAlgorithm, side, "unknown MAC algorithm")
		}
	case a.DukptIso9797Algorithm1 != nil, a.DukptIso9797Algorithm3 != nil, a.DukptCmac != nil:
		tag, err = dukptMac(w, msg, a, func() error {
			return req(keyspec.UseGenerateMacDukpt, keyspec.UseVerifyMacDukpt)
		})
	case a.EmvMac != nil:
		if err = req(keyspec.UseGenerateMacEmv, keyspec.UseVerifyMacEmv); err == nil {
			tag, err = emvMac(w, a.EmvMac, msg)
		}
	default:
		return nil, KeyUsed{}, about(fault.SubjectMacAttributes, side, "exactly one MAC attribute is required")
	}
	if err != nil {
		if f := fault.As(err); f.Kind == fault.Internal {
			return nil, KeyUsed{}, fault.Internalf("MAC", err)
		}
		return nil, KeyUsed{}, err
	}
	if out == nil { // the methods that compute a slice of their own (tag)
		out = append(dst, tag...)
	}
	return out, KeyUsed{KeyARN: arn, KCV: w.KCV()}, nil
}

// peekCMAC is computeMac's CMAC with a stored key used directly, on a
// cached key taken without a reference (peekWorking): the CMAC reads only
// the key's Block and its CMAC subkeys, whose Sum reports a Clear that
// overlaps it. ok is false, with no error, when the key was not found
// usable in the cache or was cleared during the MAC: computeMac then
// takes the referenced path, which looks it up again.
func (s *Service) peekCMAC(ident string, msg []byte, generate bool, dst []byte) (out []byte, used KeyUsed, ok bool, err error) {
	w, err := s.peekWorking(ident)
	if w == nil || err != nil {
		return nil, KeyUsed{}, false, err
	}
	if err := RequireUse(w, pick(generate, keyspec.UseGenerateMacCMAC, keyspec.UseVerifyMacCMAC), fault.SubjectKey, fault.SideNone); err != nil {
		return nil, KeyUsed{}, false, err
	}
	k, err := w.CMAC()
	if err != nil {
		return nil, KeyUsed{}, false, err
	}
	// Without a reference, this may have made the subkeys of a key whose
	// last Release has already run, which will not clear them: then they
	// are cleared here. With sequentially consistent atomics, either this
	// load sees the count at zero, or the last Release's decrement comes
	// after it, and so does that Release's load of the key's CMAC key,
	// which then sees k (stored before this load) and clears it.
	if w.refs.Load() == 0 {
		k.Clear()
	}
	if out, err = k.Sum(dst, msg); err != nil {
		return nil, KeyUsed{}, false, nil // cleared meanwhile (cmac.ErrCleared)
	}
	return out, KeyUsed{KeyARN: w.ARN, KCV: w.Record.KCV}, true, nil
}

// dukptMac computes a DUKPT MAC: the MAC key of the request's variant,
// derived from the BDK, then ISO 9797-1 algorithm 1 or 3 (padding method 1;
// TDES working key) or CMAC.
func dukptMac(w *WorkingKey, msg []byte, a MacAttributes, require func() error) ([]byte, error) {
	if err := require(); err != nil {
		return nil, err
	}
	const (
		alg1 = iota
		alg3
		cmacAlg
	)
	d, method, defType := a.DukptCmac, cmacAlg, bdkKeyType(w.Record.Attributes.Algorithm)
	switch {
	case a.DukptIso9797Algorithm1 != nil:
		d, method, defType = a.DukptIso9797Algorithm1, alg1, dukpt.TDES2
	case a.DukptIso9797Algorithm3 != nil:
		d, method, defType = a.DukptIso9797Algorithm3, alg3, dukpt.TDES2
	}
	key, t, err := dukptWorkingKey(w, fault.SideNone, d.KSN, d.DerivationType, d.Variant, dukptMAC, defType)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if method != cmacAlg && t != dukpt.TDES2 && t != dukpt.TDES3 {
		return nil, about(fault.SubjectDukptDerivationType, fault.SideNone, "ISO 9797-1 MAC algorithms need a TDES working key")
	}
	b, err := workingBlock(key, t)
	if err != nil {
		return nil, err
	}
	switch method {
	case alg1:
		return mac.Algorithm1(b, msg, mac.Method1)
	case alg3:
		return mac.Algorithm3(key, b, msg, mac.Method1)
	}
	return cmac.Sum(b, msg), nil
}
