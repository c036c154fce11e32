package ops_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

var (
	encDec   = keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	encOnly  = keyspec.ModesOfUse{Encrypt: true, Wrap: true}
	derive   = keyspec.ModesOfUse{DeriveKey: true}
	genVer   = keyspec.ModesOfUse{Generate: true, Verify: true}
	genOnly  = keyspec.ModesOfUse{Generate: true}
	asciiHex = strings.ToUpper(hex.EncodeToString([]byte("4012345678909D987")))
)

func sym(u keyspec.KeyUsage, a keyspec.Algorithm, m keyspec.ModesOfUse) keyspec.Attributes {
	return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: a, Modes: m}
}

func zeroPad(h string, n int) string { return h + strings.Repeat("0", 2*n-len(h)) }

// TestEncryptDataKAT runs published vectors through EncryptData and
// DecryptData with keys imported as RSA-OAEP key cryptograms.
func TestEncryptDataKAT(t *testing.T) {
	svc := opstest.New(t)
	aesKey := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	tdesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	aesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.AES128, derive), "FEDCBA9876543210F1F1F1F1F1F1F1F1")
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
	const iv = "000102030405060708090A0B0C0D0E0F"
	for _, tc := range []struct {
		name, key, pt, ct string
		c                 ops.DataCipher
	}{
		// NIST SP 800-38A F.1.1, F.2.1, F.3.13, F.4.1 (first two blocks) and F.3.7 (first 16 bytes).
		{"SP800-38A ECB", aesKey, pt, "3AD77BB40D7A3660A89ECAF32466EF97F5D3D58503B9699DE785895A96FDBAAF", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}},
		{"SP800-38A CBC", aesKey, pt, "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: hb(iv)}}},
		{"SP800-38A CFB128", aesKey, pt, "3B3FD92EB72DAD20333449F8E83CFB4AC8A64537A0B3A93FCDE3CDAD9F1CE58B", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCFB128, IV: hb(iv)}}},
		{"SP800-38A CFB", aesKey, pt, "3B3FD92EB72DAD20333449F8E83CFB4AC8A64537A0B3A93FCDE3CDAD9F1CE58B", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCFB, IV: hb(iv)}}},
		{"SP800-38A OFB", aesKey, pt, "3B3FD92EB72DAD20333449F8E83CFB4A7789508D16918F03F53C52DAC54ED825", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeOFB, IV: hb(iv)}}},
		{"SP800-38A CFB8", aesKey, pt[:32], "3B79424C9C0DD436BACE9E0ED4586A4F", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCFB8, IV: hb(iv)}}},
		// X9.24-1-2009 A.4.2 KSN ...E00001, data variants (moov-io/dukpt pkg/des/des_test.go).
		{"TDES DUKPT request", tdesBDK, zeroPad(asciiHex, 24), "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F", ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptRequest}}},
		{"TDES DUKPT bidirectional", tdesBDK, zeroPad(asciiHex, 24), "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F", ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001"), Mode: ops.ModeCBC}}},
		{"TDES DUKPT response", tdesBDK, zeroPad(asciiHex, 24), "1FCC89AF66222F27B903898BB2BC8589CDBFDE5EC6AFCC25", ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptResponse}}},
		// X9.24-3-2017 B.1 BDK and IKID, counter 1, data keys (moov-io/dukpt pkg/aes/aes_test.go).
		{"AES DUKPT request", aesBDK, zeroPad(asciiHex, 32), "E5AFA5B408A3310E3D779C8A9A2AE29448BD5B4232582090DB703AF647205A79", ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("123456789012345600000001"), Variant: ops.DukptRequest, DerivationType: "AES_128"}}},
		{"AES DUKPT response", aesBDK, zeroPad(asciiHex, 32), "84904DFC6B5201A4F1FE2EAA49E70B8C01838EF53030790FF785D630AB3916B4", ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("123456789012345600000001"), Variant: ops.DukptResponse}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: hb(tc.pt), Attributes: tc.c})
			if err != nil {
				t.Fatal(err)
			}
			if hx(out.Data) != tc.ct || out.KeyARN != tc.key || out.KCV == "" {
				t.Fatalf("EncryptData = %+v, want %s", out, tc.ct)
			}
			back, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tc.key, CipherText: hb(tc.ct), Attributes: tc.c})
			if err != nil || hx(back.Data) != tc.pt {
				t.Fatalf("DecryptData = %+v, %v", back, err)
			}
		})
	}
}

// TestDataRoundTripAndReEncrypt: random data through every mode for TDES
// and AES keys, PKCS#7 padding, and re-encryption from one key to another.
func TestDataRoundTripAndReEncrypt(t *testing.T) {
	svc := opstest.New(t)
	keys := map[string]string{
		"TDES2":  opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210"),
		"TDES3":  opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES3Key, encDec), "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567"),
		"AES128": opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), strings.Repeat("0F1E2D3C4B5A6978", 2)),
	}
	for name, k := range keys {
		bs := 16
		if strings.HasPrefix(name, "TDES") {
			bs = 8
		}
		for _, mode := range []ops.CipherMode{ops.ModeECB, ops.ModeCBC, ops.ModeCFB, ops.ModeCFB1, ops.ModeCFB8, ops.ModeCFB64, ops.ModeCFB128, ops.ModeOFB} {
			if mode == ops.ModeCFB128 && bs == 8 {
				continue
			}
			for _, pad := range []ops.Padding{ops.PaddingNone, ops.PaddingPKCS1} {
				n := 4 * bs
				if pad != ops.PaddingNone {
					n = 4*bs - 5
				}
				p := make([]byte, n)
				rand.Read(p)
				c := &ops.SymmetricCipher{Mode: mode, Padding: pad}
				if mode != ops.ModeECB {
					c.IV = make([]byte, bs)
					rand.Read(c.IV)
				}
				ptHex := strings.ToUpper(hex.EncodeToString(p))
				enc, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k, PlainText: hb(ptHex), Attributes: ops.DataCipher{Symmetric: c}})
				if err != nil {
					t.Fatalf("%s %s %q: %v", name, mode, pad, err)
				}
				dec, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k, CipherText: enc.Data, Attributes: ops.DataCipher{Symmetric: c}})
				if err != nil || hx(dec.Data) != ptHex {
					t.Fatalf("%s %s %q: round trip: %v", name, mode, pad, err)
				}
				// Re-encrypt under the AES key in CBC, then decrypt there.
				out := &ops.SymmetricCipher{Mode: ops.ModeCBC, Padding: pad}
				re, err := svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: k, OutgoingKeyIdentifier: keys["AES128"],
					CipherText: enc.Data, Incoming: ops.DataCipher{Symmetric: c}, Outgoing: ops.DataCipher{Symmetric: out}})
				if err != nil {
					t.Fatalf("%s %s: re-encrypt: %v", name, mode, err)
				}
				if re.KeyARN != keys["AES128"] {
					t.Fatalf("re-encrypt KeyArn %s", re.KeyARN)
				}
				dec, err = svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: keys["AES128"], CipherText: re.Data, Attributes: ops.DataCipher{Symmetric: out}})
				if err != nil || hx(dec.Data) != ptHex {
					t.Fatalf("%s %s: decrypt after re-encrypt: %v", name, mode, err)
				}
			}
		}
	}
}

// TestDUKPTReEncrypt: data a terminal encrypted under its DUKPT key is
// re-encrypted under a zone key without leaving the service.
func TestDUKPTReEncrypt(t *testing.T) {
	svc := opstest.New(t)
	bdk := opstest.Import(t, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	zone := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES3Key, encDec), "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")
	re, err := svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: bdk, OutgoingKeyIdentifier: zone,
		CipherText: hb("FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F"),
		Incoming:   ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptRequest}},
		Outgoing:   ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: zone, CipherText: re.Data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}})
	if err != nil || !strings.HasPrefix(hx(dec.Data), asciiHex) {
		t.Fatalf("%+v %v", dec, err)
	}
}

func TestRSAData(t *testing.T) {
	svc := opstest.New(t)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.D1, Class: keyspec.AsymmetricPair,
		Algorithm: keyspec.RSA2048, Modes: encDec}})
	if err != nil {
		t.Fatal(err)
	}
	// Maximum plaintext sizes of the user guide's "Encrypt data" table (RSA_2048, in hex digits).
	for pad, maxHex := range map[ops.Padding]int{ops.PaddingOAEPSHA1: 428, ops.PaddingOAEPSHA256: 380, ops.PaddingOAEPSHA512: 252, ops.PaddingPKCS1: 488} {
		c := ops.DataCipher{Asymmetric: &ops.AsymmetricCipher{Padding: pad}}
		p := make([]byte, maxHex/2)
		rand.Read(p)
		ptHex := strings.ToUpper(hex.EncodeToString(p))
		enc, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k.ARN, PlainText: hb(ptHex), Attributes: c})
		if err != nil {
			t.Fatalf("%s: %v", pad, err)
		}
		dec, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k.ARN, CipherText: enc.Data, Attributes: c})
		if err != nil || hx(dec.Data) != ptHex {
			t.Fatalf("%s: round trip %v", pad, err)
		}
		if pad != ops.PaddingPKCS1 {
			_, err = svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k.ARN, PlainText: hb(ptHex + "0000"), Attributes: c})
			if fault.KindOf(err) != fault.Validation {
				t.Errorf("%s: over-long plaintext: %v", pad, err)
			}
		}
	}
}

func TestDataKeySeparation(t *testing.T) {
	svc := opstest.New(t)
	encOnlyKey := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encOnly), "2B7E151628AED2A6ABF7158809CF4F3C")
	pek := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210")
	dataKey := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210")
	macKey := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genOnly), "0123456789ABCDEFFEDCBA9876543210")
	ecb := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"decrypt with an encrypt-only key", func() error {
			_, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: encOnlyKey, CipherText: hb(strings.Repeat("00", 16)), Attributes: ecb})
			return err
		}},
		{"encrypt with a PIN key", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: pek, PlainText: hb(strings.Repeat("00", 8)), Attributes: ecb})
			return err
		}},
		{"DUKPT with a data key", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 8)),
				Attributes: ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001")}}})
			return err
		}},
		{"RSA padding with a data key", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 8)),
				Attributes: ops.DataCipher{Asymmetric: &ops.AsymmetricCipher{Padding: ops.PaddingOAEPSHA256}}})
			return err
		}},
		{"unaligned TDES data", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 9)), Attributes: ecb})
			return err
		}},
		{"wrong IV length", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 8)),
				Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: hb(strings.Repeat("00", 16))}}})
			return err
		}},
		{"CFB128 with TDES", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 16)),
				Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCFB128, IV: hb(strings.Repeat("00", 8))}}})
			return err
		}},
		{"encrypt with a MAC key", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: macKey, PlainText: hb(strings.Repeat("00", 8)), Attributes: ecb})
			return err
		}},
		{"EMV not supported", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: dataKey, PlainText: hb(strings.Repeat("00", 8)),
				Attributes: ops.DataCipher{Emv: &ops.EmvCipher{}}})
			return err
		}},
	} {
		if err := tc.call(); fault.KindOf(err) != fault.Validation {
			t.Errorf("%s: %v, want a validation error", tc.name, err)
		}
	}
}

func TestMacKAT(t *testing.T) {
	svc := opstest.New(t)
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	m6 := opstest.Import(t, svc, sym(keyspec.M6, keyspec.AES128, genVer), "2B7E151628AED2A6ABF7158809CF4F3C")
	tdesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	aesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.AES128, derive), "FEDCBA9876543210F1F1F1F1F1F1F1F1")
	for _, tc := range []struct {
		name, key, msg, mac string
		a                   ops.MacAttributes
	}{
		// knovichikhin/pyemv tests/test_mac.py (padding method 1).
		{"ISO9797 alg 3", m3, hex.EncodeToString([]byte("hello world")), "78DA3D3DEB48FD4D", ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}},
		// NIST SP 800-38B D.1 example 2.
		{"CMAC AES", m6, "6BC1BEE22E409F96E93D7E117393172A", "070A16B46B4D4144F79BDD9DD04A287C", ops.MacAttributes{Algorithm: ops.MacCMAC}},
		// moov-io/dukpt pkg/des/des_test.go (X9.24-1-2009 A.4.2 KSN ...E00001).
		{"DUKPT alg 3 request", tdesBDK, asciiHex, "9CCC78173FC4FB64", ops.MacAttributes{DukptIso9797Algorithm3: &ops.DukptMac{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptRequest}}},
		{"DUKPT alg 3 response", tdesBDK, asciiHex, "20364223C1FF00FA", ops.MacAttributes{DukptIso9797Algorithm3: &ops.DukptMac{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptResponse}}},
		// moov-io/dukpt pkg/aes/aes_test.go (X9.24-3-2017 B.1 BDK, counter 1).
		{"DUKPT CMAC request", aesBDK, asciiHex, "A2EB5C1C35809E58404E873C3C411E31", ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: hb("123456789012345600000001"), Variant: ops.DukptRequest}}},
		{"DUKPT CMAC response", aesBDK, asciiHex, "DD4E1895FD9BF53D8DAF25568ABF551D", ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: hb("123456789012345600000001"), Variant: ops.DukptResponse, DerivationType: "AES_128"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: tc.key, MessageData: hb(tc.msg), Attributes: tc.a})
			if err != nil {
				t.Fatal(err)
			}
			if hx(out.Mac) != tc.mac || out.KeyARN != tc.key {
				t.Fatalf("GenerateMac = %+v, want %s", out, tc.mac)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: tc.key, MessageData: hb(tc.msg), Mac: hb(tc.mac), Attributes: tc.a}); err != nil {
				t.Fatal(err)
			}
			trunc := tc.mac[:8]
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: tc.key, MessageData: hb(tc.msg), Mac: hb(trunc), MacLength: 4, Attributes: tc.a}); err != nil {
				t.Fatalf("truncated: %v", err)
			}
			bad := []byte(tc.mac)
			if bad[0] == '0' {
				bad[0] = '1'
			} else {
				bad[0] = '0'
			}
			_, err = svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: tc.key, MessageData: hb(tc.msg), Mac: hb(string(bad)), Attributes: tc.a})
			if f := fault.As(err); f == nil || f.Kind != fault.VerificationFailed || f.Reason != fault.ReasonInvalidMAC {
				t.Fatalf("wrong MAC: %v", err)
			}
			g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: tc.key, MessageData: hb(tc.msg), Attributes: tc.a, MacLength: 4})
			if err != nil || hx(g.Mac) != trunc {
				t.Fatalf("MacLength 4: %+v %v", g, err)
			}
		})
	}
}

func TestMacKeySeparation(t *testing.T) {
	svc := opstest.New(t)
	m1 := opstest.Import(t, svc, sym(keyspec.M1, keyspec.TDES2Key, genOnly), "0123456789ABCDEFFEDCBA9876543210")
	m7 := createKey(t, svc, sym(keyspec.M7, keyspec.HMACSHA256, genVer))
	d0 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210")
	aesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.AES128, derive), "FEDCBA9876543210F1F1F1F1F1F1F1F1")
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"verify with a generate-only key", func() error {
			_, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: m1, MessageData: hb("00"), Mac: hb("0000000000000000"), Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg1}})
			return err
		}},
		{"alg 3 with an M1 key", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m1, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}})
			return err
		}},
		{"HMAC hash differs from the key's", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m7, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacHMACSHA512}})
			return err
		}},
		{"MAC with a data key", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: d0, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
			return err
		}},
		{"AES-256 working key from an AES-128 BDK", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: aesBDK, MessageData: hb("00"), Attributes: ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: hb("123456789012345600000001"), DerivationType: "AES_256"}}})
			return err
		}},
		{"alg 1 with an AES working key", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: aesBDK, MessageData: hb("00"), Attributes: ops.MacAttributes{DukptIso9797Algorithm1: &ops.DukptMac{KSN: hb("123456789012345600000001"), DerivationType: "AES_128"}}})
			return err
		}},
		{"bad KSN", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: aesBDK, MessageData: hb("00"), Attributes: ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: hb("FFFF9876543210E00001")}}})
			return err
		}},
		{"MacLength too long", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m1, MessageData: hb("00"), MacLength: 16, Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg1}})
			return err
		}},
	} {
		if err := tc.call(); fault.KindOf(err) != fault.Validation {
			t.Errorf("%s: %v, want a validation error", tc.name, err)
		}
	}
}

// TestNoTokenCallsPerOperation: after the first use of each key, data and
// MAC operations make no PKCS#11 call.
func TestNoTokenCallsPerOperation(t *testing.T) {
	svc := opstest.New(t)
	d0 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	bdk := opstest.Import(t, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	run := func() {
		if _, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: d0, PlainText: hb(strings.Repeat("00", 32)), Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: bdk, CipherText: hb(strings.Repeat("00", 16)), Attributes: ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001")}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m3, MessageData: hb("00"), Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}}); err != nil {
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

func createKey(t testing.TB, svc *ops.Service, a keyspec.Attributes) string {
	t.Helper()
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: a})
	if err != nil {
		t.Fatal(err)
	}
	return k.ARN
}

// TestHMACRoundTrip: an HMAC key cannot be imported as a key cryptogram
// (RSA-3072 is weaker than any HMAC key), so the RFC 4231 vectors run in
// hsm/mac; here every HMAC algorithm generates and verifies through the
// service, with the hash bound to the key.
func TestHMACRoundTrip(t *testing.T) {
	svc := opstest.New(t)
	named := map[keyspec.Algorithm]ops.MacAlgorithm{keyspec.HMACSHA224: ops.MacHMACSHA224, keyspec.HMACSHA256: ops.MacHMACSHA256,
		keyspec.HMACSHA384: ops.MacHMACSHA384, keyspec.HMACSHA512: ops.MacHMACSHA512}
	for alg, size := range map[keyspec.Algorithm]int{keyspec.HMACSHA224: 28, keyspec.HMACSHA256: 32, keyspec.HMACSHA384: 48, keyspec.HMACSHA512: 64} {
		k := createKey(t, svc, sym(keyspec.M7, alg, genVer))
		for _, name := range []ops.MacAlgorithm{ops.MacHMAC, named[alg]} {
			a := ops.MacAttributes{Algorithm: name}
			g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k, MessageData: hb("4869205468657265"), Attributes: a})
			if err != nil || len(g.Mac) != size {
				t.Fatalf("%s: %+v %v", name, g, err)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: k, MessageData: hb("4869205468657265"), Mac: g.Mac, Attributes: a}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: k, MessageData: hb("4869205468657266"), Mac: g.Mac, Attributes: a}); fault.KindOf(err) != fault.VerificationFailed {
				t.Fatalf("%s: altered message verified: %v", name, err)
			}
		}
	}
}

// RSA without padding (the guide's `Asymmetric={}`: callers pad themselves):
// one modulus-sized block each way, checked against crypto/rsa's PKCS #1
// v1.5 through the same service. A block the caller padded with PKCS #1 v1.5
// type 2 (RFC 8017 7.2.1) and encrypted raw decrypts with PaddingPKCS1; a
// PaddingPKCS1 ciphertext decrypts raw to that padded block. hsm/rsaraw
// holds the OpenSSL known answer of the primitive.
func TestRawRSAData(t *testing.T) {
	svc := opstest.New(t)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.D1, Class: keyspec.AsymmetricPair,
		Algorithm: keyspec.RSA2048, Modes: encDec}})
	if err != nil {
		t.Fatal(err)
	}
	raw := ops.DataCipher{Asymmetric: &ops.AsymmetricCipher{Padding: ops.PaddingNone}}
	pkcs1 := ops.DataCipher{Asymmetric: &ops.AsymmetricCipher{Padding: ops.PaddingPKCS1}}
	msg := []byte("1234123412341234")
	ps := make([]byte, 256-3-len(msg))
	for i := range ps {
		ps[i] = byte(1 + i%200)
	}
	blk := append(append(append([]byte{0, 2}, ps...), 0), msg...)
	enc, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k.ARN, PlainText: blk, Attributes: raw})
	if err != nil || len(enc.Data) != 256 {
		t.Fatalf("raw encrypt: %v", err)
	}
	dec, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k.ARN, CipherText: enc.Data, Attributes: pkcs1})
	if err != nil || string(dec.Data) != string(msg) {
		t.Fatalf("PKCS #1 decryption of the raw ciphertext: %q %v", dec, err)
	}
	back, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k.ARN, CipherText: enc.Data, Attributes: raw})
	if err != nil || hx(back.Data) != hx(blk) {
		t.Fatalf("raw round trip: %v", err)
	}
	enc2, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k.ARN, PlainText: msg, Attributes: pkcs1})
	if err != nil {
		t.Fatal(err)
	}
	open, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k.ARN, CipherText: enc2.Data, Attributes: raw})
	if err != nil || len(open.Data) != 256 || open.Data[0] != 0 || open.Data[1] != 2 || string(open.Data[256-len(msg):]) != string(msg) ||
		open.Data[256-len(msg)-1] != 0 {
		t.Fatalf("raw decryption of a PKCS #1 ciphertext is not the padded block: %v", err)
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"short block", msg},
		{"not below the modulus", hb(strings.Repeat("FF", 256))},
	} {
		_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k.ARN, PlainText: c.data, Attributes: raw})
		if f := fault.As(err); f == nil || f.Kind != fault.Validation || f.Subject != fault.SubjectData {
			t.Errorf("encrypt %s: %v", c.name, err)
		}
		_, err = svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: k.ARN, CipherText: c.data, Attributes: raw})
		if f := fault.As(err); f == nil || f.Kind != fault.Validation || f.Subject != fault.SubjectData {
			t.Errorf("decrypt %s: %v", c.name, err)
		}
	}
}
