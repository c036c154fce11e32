package ops_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

const (
	dynKEKAES  = "000102030405060708090A0B0C0D0E0F"
	dynKEKTDES = "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567"
	sp80038A   = "2B7E151628AED2A6ABF7158809CF4F3C"
)

// dynWrap builds a TR-31 key block (version D under an AES KBPK, B under a
// TDES one) holding keyHex.
func dynWrap(t testing.TB, kbpkHex string, usage string, alg, mode byte, keyHex string, blocks ...tr31.OptionalBlock) string {
	t.Helper()
	kbpk, _ := hex.DecodeString(kbpkHex)
	key, _ := hex.DecodeString(keyHex)
	v := byte('D')
	if len(kbpk) == 24 {
		v = 'B'
	}
	blk, err := tr31.Wrap(kbpk, tr31.Header{Version: v, KeyUsage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00",
		Exportability: 'N', Blocks: blocks}, key)
	if err != nil {
		t.Fatal(err)
	}
	return blk
}

type dynEnv struct {
	svc              *ops.Service
	kek, kekTDES     string
	storedAES        string // D0 with the SP 800-38A key, for check values
	kekEncOnly, notK string
}

func newDynEnv(t testing.TB) *dynEnv {
	svc := opstest.New(t)
	return &dynEnv{
		svc:        svc,
		kek:        opstest.Import(t, svc, sym(keyspec.K1, keyspec.AES128, encDec), dynKEKAES),
		kekTDES:    opstest.Import(t, svc, sym(keyspec.K0, keyspec.TDES3Key, encDec), dynKEKTDES),
		storedAES:  opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), sp80038A),
		kekEncOnly: opstest.Import(t, svc, sym(keyspec.K1, keyspec.AES128, encOnly), dynKEKAES),
		notK:       opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), dynKEKAES),
	}
}

// TestDynamicDataKeys: EncryptData/DecryptData/ReEncryptData with the data
// key carried as a TR-31 block under a stored KEK (NIST SP 800-38A F.2.1
// CBC-AES128 vectors).
func TestDynamicDataKeys(t *testing.T) {
	e := newDynEnv(t)
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
	const ct = "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2"
	cbc := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: hb("000102030405060708090A0B0C0D0E0F")}}
	stored, err := e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.storedAES, PlainText: hb(pt), Attributes: cbc})
	if err != nil {
		t.Fatal(err)
	}
	both := &ops.DynamicKey{Tr31KeyBlock: dynWrap(t, dynKEKAES, "D0", 'A', 'B', sp80038A)}
	out, err := e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.kek, PlainText: hb(pt), Attributes: cbc, WrappedKey: both})
	if err != nil || hx(out.Data) != ct || out.KeyARN != e.kek || out.KCV != stored.KCV {
		t.Fatalf("EncryptData(wrapped) = %+v, %v; want %s, KCV %s", out, err, ct, stored.KCV)
	}
	dec := &ops.DynamicKey{Tr31KeyBlock: dynWrap(t, dynKEKAES, "D0", 'A', 'D', sp80038A)}
	back, err := e.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: e.kek, CipherText: hb(ct), Attributes: cbc, WrappedKey: dec})
	if err != nil || hx(back.Data) != pt {
		t.Fatalf("DecryptData(wrapped) = %+v, %v", back, err)
	}
	// The check value follows KeyCheckValueAlgorithm (ANSI X9.24 is TDES only).
	if _, err := e.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: e.kek, CipherText: hb(ct), Attributes: cbc,
		WrappedKey: &ops.DynamicKey{Tr31KeyBlock: dec.Tr31KeyBlock, KCVAlgorithm: keyspec.KCVANSIX924}}); fault.KindOf(err) != fault.Validation {
		t.Fatalf("ANSI X9.24 KCV of an AES key: %v", err)
	}

	// A TDES key in a version B block under a TDES KEK is the same key as the stored one.
	const tdesKey = "0123456789ABCDEFFEDCBA9876543210"
	storedTDES := opstest.Import(t, e.svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), tdesKey)
	tdes := &ops.DynamicKey{Tr31KeyBlock: dynWrap(t, dynKEKTDES, "D0", 'T', 'E', tdesKey)}
	ecb := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}
	w, err := e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.kekTDES, PlainText: hb(pt), Attributes: ecb, WrappedKey: tdes})
	if err != nil || w.KCV != "08D7B4" || w.KeyARN != e.kekTDES {
		t.Fatalf("TDES wrapped: %+v %v", w, err)
	}
	if s, err := e.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: storedTDES, CipherText: w.Data, Attributes: ecb}); err != nil || hx(s.Data) != pt {
		t.Fatalf("stored TDES key does not decrypt: %+v %v", s, err)
	}

	// ReEncryptData: wrapped -> stored and stored -> wrapped.
	re, err := e.svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: e.kek, OutgoingKeyIdentifier: storedTDES, CipherText: hb(ct),
		Incoming: cbc, Outgoing: ecb, IncomingWrappedKey: dec})
	if err != nil || !bytes.Equal(re.Data, w.Data) || re.KeyARN != storedTDES {
		t.Fatalf("ReEncryptData(incoming wrapped) = %+v, %v; want %s", re, err, w.Data)
	}
	re, err = e.svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: storedTDES, OutgoingKeyIdentifier: e.kek, CipherText: w.Data,
		Incoming: ecb, Outgoing: cbc, OutgoingWrappedKey: both})
	if err != nil || hx(re.Data) != ct || re.KeyARN != e.kek || re.KCV != stored.KCV {
		t.Fatalf("ReEncryptData(outgoing wrapped) = %+v, %v; want %s", re, err, ct)
	}

	bf := at{fault.SubjectWrappedKey, fault.SideNone}
	kek := at{fault.SubjectKey, fault.SideNone}
	tampered := []byte(both.Tr31KeyBlock)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name, kek string
		field     at
		enc       bool
		blk       string
	}{
		{"decrypt-only key encrypting", e.kek, bf, true, dec.Tr31KeyBlock},
		{"encrypt-only key decrypting", e.kekTDES, bf, false, tdes.Tr31KeyBlock},
		{"MAC key", e.kek, bf, true, dynWrap(t, dynKEKAES, "M6", 'A', 'C', sp80038A)},
		{"PIN key", e.kek, bf, true, dynWrap(t, dynKEKAES, "P0", 'A', 'B', sp80038A)},
		{"tampered", e.kek, bf, true, string(tampered)},
		{"version D under TDES KEK", e.kekTDES, bf, true, both.Tr31KeyBlock},
		{"version B under AES KEK", e.kek, bf, true, tdes.Tr31KeyBlock},
		{"KEK without unwrap", e.kekEncOnly, kek, true, both.Tr31KeyBlock},
		{"D0 key as KEK", e.notK, kek, true, both.Tr31KeyBlock},
		{"not a key block", e.kek, bf, true, "D0016D0AB00N0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wk := &ops.DynamicKey{Tr31KeyBlock: tc.blk}
			var err error
			if tc.enc {
				_, err = e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.kek, PlainText: hb(pt), Attributes: ecb, WrappedKey: wk})
			} else {
				_, err = e.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tc.kek, CipherText: hb(pt), Attributes: ecb, WrappedKey: wk})
			}
			if !isAbout(err, tc.field) {
				t.Fatalf("err = %s; want Validation about %+v", aboutOf(err), tc.field)
			}
		})
	}
	// Incoming/outgoing members are named in errors.
	_, err = e.svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: storedTDES, OutgoingKeyIdentifier: e.kek, CipherText: w.Data,
		Incoming: ecb, Outgoing: cbc, OutgoingWrappedKey: dec})
	if !isAbout(err, at{fault.SubjectWrappedKey, fault.SideOutgoing}) {
		t.Fatalf("outgoing decrypt-only key: %v", err)
	}
}

// TestDynamicMacKeys: GenerateMac/VerifyMac with the MAC key as a TR-31
// block, including HMAC keys with published known answers (an HMAC key can
// be a dynamic key under an AES-128 KEK when it is no stronger than the KEK:
// 16-byte keys, SP 800-107 Rev. 1 5.3.4).
func TestDynamicMacKeys(t *testing.T) {
	e := newDynEnv(t)
	hm := func(id string) tr31.OptionalBlock { return tr31.OptionalBlock{ID: "HM", Data: id} }
	for _, tc := range []struct {
		name, blk, msg, mac string
		a                   ops.MacAttributes
		macLen              int
	}{
		// knovichikhin/pyemv tests/test_mac.py (ISO 9797-1 algorithm 3, padding method 1).
		{"ISO9797 alg 3", dynWrap(t, dynKEKAES, "M3", 'T', 'C', "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"),
			hex.EncodeToString([]byte("hello world")), "78DA3D3DEB48FD4D", ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}, 0},
		// NIST SP 800-38B D.1 example 2.
		{"CMAC AES", dynWrap(t, dynKEKAES, "M6", 'A', 'C', sp80038A),
			"6BC1BEE22E409F96E93D7E117393172A", "070A16B46B4D4144F79BDD9DD04A287C", ops.MacAttributes{Algorithm: ops.MacCMAC}, 0},
		// C2SP/wycheproof testvectors/hmac_sha256_test.json tcId 164, 165
		// (keySize 128, tagSize 256) and 167 (tagSize 128); also checked
		// with openssl mac HMAC.
		{"wycheproof HMAC-SHA256 164", dynWrap(t, dynKEKAES, "M7", 'H', 'C', "ac686ba0f1a51b4ec4f0b30492b7f556", hm("21")),
			"2fa43a14ae500507deb95ab5bd32b0fe", "008532A53D0C0AB22027AE249023375374E2239B959609E8339B05A15742A675", ops.MacAttributes{Algorithm: ops.MacHMACSHA256}, 0},
		{"wycheproof HMAC-SHA256 165", dynWrap(t, dynKEKAES, "M7", 'H', 'C', "73ef9ef1a4225e51e3c1db3ace1fa24f", hm("21")),
			"ffad380d9aabb0acede5c1bf112925cdfc3d379fc2376a4fe2644490d0430ac3", "9C7CB9F7C207EC46D1E3C55764731C4AB5DDBAE4E1401E52A895DF0CFF4787C9", ops.MacAttributes{Algorithm: ops.MacHMAC}, 0},
		{"wycheproof HMAC-SHA256 167", dynWrap(t, dynKEKAES, "M7", 'H', 'C', "e09eaa5a3f5e56d279d5e7a03373f6ea", hm("21")),
			"ef4eab37181f98423e53e947e7050fd0", "CFC19EC07902EC8BE489606D8F40D172", ops.MacAttributes{Algorithm: ops.MacHMAC}, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wk := &ops.DynamicKey{Tr31KeyBlock: tc.blk}
			g, err := e.svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e.kek, MessageData: hb(tc.msg), Attributes: tc.a, MacLength: tc.macLen, WrappedKey: wk})
			if err != nil || hx(g.Mac) != tc.mac || g.KeyARN != e.kek || g.KCV == "" {
				t.Fatalf("GenerateMac = %+v, %v; want %s", g, err, tc.mac)
			}
			if _, err := e.svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e.kek, MessageData: hb(tc.msg), Mac: hb(tc.mac), Attributes: tc.a, WrappedKey: wk}); err != nil {
				t.Fatal(err)
			}
			_, err = e.svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e.kek, MessageData: hb(tc.msg + "01"), Mac: hb(tc.mac), Attributes: tc.a, WrappedKey: wk}) // "00" would not alter a padding method 1 MAC
			if fault.KindOf(err) != fault.VerificationFailed {
				t.Fatalf("altered message: %v", err)
			}
		})
	}
	// A 32-byte HMAC-SHA256 key (256 bits) is stronger than the AES-128 KEK.
	strong := dynWrap(t, dynKEKAES, "M7", 'H', 'C', strings.Repeat("0B", 32), hm("21"))
	_, err := e.svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e.kek, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacHMAC},
		WrappedKey: &ops.DynamicKey{Tr31KeyBlock: strong}})
	if f := fault.As(err); f == nil || f.Kind != fault.Validation || !strings.Contains(f.Message, "weaker") {
		t.Fatalf("strong HMAC key under AES-128: %v", err)
	}
	// The header's usage binds the key: a D0 key does not MAC.
	_, err = e.svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e.kek, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC},
		WrappedKey: &ops.DynamicKey{Tr31KeyBlock: dynWrap(t, dynKEKAES, "D0", 'A', 'B', sp80038A)}})
	if !isAbout(err, at{fault.SubjectWrappedKey, fault.SideNone}) {
		t.Fatalf("D0 dynamic key for CMAC: %v", err)
	}
}

// TestDynamicKeysNoTokenCalls: a dynamic key is unwrapped in process under
// the cached KEK, and EMV session keys are derived from the cached issuer
// master key: no PKCS#11 call per operation.
func TestDynamicKeysNoTokenCalls(t *testing.T) {
	e := newDynEnv(t)
	e1 := opstest.Import(t, e.svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMC)
	e2 := opstest.Import(t, e.svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	wk := &ops.DynamicKey{Tr31KeyBlock: dynWrap(t, dynKEKAES, "D0", 'A', 'B', sp80038A)}
	run := func() {
		if _, err := e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.kek, PlainText: hb(strings.Repeat("00", 32)),
			Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}, WrappedKey: wk}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: hb("249999FFFFFFFFFF"),
			Attributes: emvCipher(ops.EmvOptionA, emvPAN, ops.ModeECB, "")}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: hb("8424000008"),
			Attributes: emvMacAttrs(ops.EmvCommon, emvR, "")}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	before := custody.TokenOperations()
	for range 200 {
		run()
	}
	if n := custody.TokenOperations() - before; n != 0 {
		t.Fatalf("%d PKCS#11 calls for 600 operations", n)
	}
}

// FuzzDynamicKeyBlock: any WrappedKey block and check-value algorithm give
// a result or a client fault, never a panic or an internal error.
func FuzzDynamicKeyBlock(f *testing.F) {
	e := newDynEnv(f)
	f.Add(dynWrap(f, dynKEKAES, "D0", 'A', 'B', sp80038A), "")
	f.Add(dynWrap(f, dynKEKAES, "M7", 'H', 'C', "ac686ba0f1a51b4ec4f0b30492b7f556", tr31.OptionalBlock{ID: "HM", Data: "21"}), "HMAC")
	f.Add(dynWrap(f, dynKEKAES, "B0", 'A', 'X', sp80038A), "CMAC")
	f.Add("D0016D0AB00N0000", "ANSI_X9_24")
	f.Fuzz(func(t *testing.T, blk, kcvAlg string) {
		wk := &ops.DynamicKey{Tr31KeyBlock: blk, KCVAlgorithm: keyspec.KCVAlgorithm(kcvAlg)}
		for _, err := range []error{
			func() error {
				_, err := e.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: e.kek, CipherText: hb(strings.Repeat("00", 32)),
					Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}, WrappedKey: wk})
				return err
			}(),
			func() error {
				_, err := e.svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e.kek, MessageData: hb("00"),
					Attributes: ops.MacAttributes{Algorithm: ops.MacHMAC}, WrappedKey: wk})
				return err
			}(),
		} {
			if err != nil && fault.KindOf(err) == fault.Internal {
				t.Fatalf("internal error: %v", err)
			}
		}
	})
}
