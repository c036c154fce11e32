package ops_test

import (
	"bytes"
	"fmt"
	"testing"

	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestFastCBC checks fastCBC, the data plane's path for a cached AES key in
// CBC without padding: it takes exactly the requests it is for, and gives
// what appendData (the general path) gives; for every other request (other
// keys, modes, paddings, IVs, lengths, key uses, a key not cached,
// overlapping buffers) it declines without touching dst, and
// AppendEncryptData and AppendDecryptData answer as appendData does. The
// first vector is NIST SP 800-38A F.2.1 CBC-AES128.Encrypt (two blocks).
func TestFastCBC(t *testing.T) {
	svc := opstest.New(t)
	const sp38aKey = "2B7E151628AED2A6ABF7158809CF4F3C"
	aes128 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), sp38aKey)
	aes256 := createKey(t, svc, sym(keyspec.D0, keyspec.AES256, encDec))
	aesEnc := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encOnly), sp38aKey)
	tdes := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210")
	notCached := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), sp38aKey)
	pt := hb("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51")
	iv := hb("000102030405060708090A0B0C0D0E0F")
	cbc := func(iv []byte, p ops.Padding) *ops.SymmetricCipher {
		return &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: iv, Padding: p}
	}

	// F.2.1 through the fast path, once the key is cached (the first
	// request opens it on the general path).
	in := ops.EncryptDataInput{KeyIdentifier: aes128, PlainText: pt, Attributes: ops.DataCipher{Symmetric: cbc(iv, ops.PaddingNone)}}
	if _, _, err := svc.AppendEncryptData(nil, in); err != nil {
		t.Fatal(err)
	}
	ct, used, ok := ops.FastCBC(svc, []byte("head"), aes128, cbc(iv, ops.PaddingNone), pt, true)
	if want := "head7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2"; !ok || string(ct[:4])+hx(ct[4:]) != want || used.KeyARN != aes128 || used.KCV == "" {
		t.Fatalf("fastCBC F.2.1 = %x, %+v, %v", ct, used, ok)
	}
	if out, _, ok := ops.FastCBC(svc, nil, aes128, cbc(iv, ops.PaddingNone), ct[4:], false); !ok || !bytes.Equal(out, pt) {
		t.Fatalf("fastCBC F.2.2 = %x, %v", out, ok)
	}

	for _, tc := range []struct {
		name  string
		key   string
		c     *ops.SymmetricCipher
		data  []byte
		enc   bool
		fast  bool // fastCBC takes it
		fresh bool // the key is not cached first
	}{
		{"AES-128 no IV", aes128, cbc(nil, ops.PaddingNone), pt, true, true, false},
		{"AES-128 no IV decrypt", aes128, cbc(nil, ops.PaddingNone), pt, false, true, false},
		{"AES-256 IV", aes256, cbc(iv, ops.PaddingNone), pt, true, true, false},
		{"AES-256 IV decrypt", aes256, cbc(iv, ops.PaddingNone), pt[:16], false, true, false},
		{"encrypt-only key", aesEnc, cbc(iv, ops.PaddingNone), pt, true, true, false},
		{"encrypt-only key decrypts", aesEnc, cbc(iv, ops.PaddingNone), pt, false, false, false},
		{"TDES", tdes, cbc(iv[:8], ops.PaddingNone), pt, true, false, false},
		{"ECB", aes128, &ops.SymmetricCipher{Mode: ops.ModeECB}, pt, true, false, false},
		{"CFB128", aes128, &ops.SymmetricCipher{Mode: ops.ModeCFB128, IV: iv}, pt, true, false, false},
		{"unknown mode", aes128, &ops.SymmetricCipher{Mode: 99, IV: iv}, pt, true, false, false},
		{"PKCS #7", aes128, cbc(iv, ops.PaddingPKCS1), pt[:20], true, false, false},
		{"PKCS #7 decrypt", aes128, cbc(iv, ops.PaddingPKCS1), pt, false, false, false},
		{"OAEP padding", aes128, cbc(iv, ops.PaddingOAEPSHA256), pt, true, false, false},
		{"15-byte IV", aes128, cbc(iv[:15], ops.PaddingNone), pt, true, false, false},
		{"8-byte IV", aes128, cbc(iv[:8], ops.PaddingNone), pt, false, false, false},
		{"empty data", aes128, cbc(iv, ops.PaddingNone), nil, true, false, false},
		{"17 bytes", aes128, cbc(iv, ops.PaddingNone), pt[:17], true, false, false},
		{"not cached", notCached, cbc(iv, ops.PaddingNone), pt, true, false, true},
		{"unknown key", "arn:aws:payment-cryptography:us-east-1:111122223333:key/doesnotexist12345", cbc(iv, ops.PaddingNone), pt, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ops.DataCipher{Symmetric: tc.c}
			if !tc.fresh { // caches the key (a refusal too: it is compared below)
				_, _, _ = ops.AppendDataGeneral(svc, nil, tc.key, a, tc.data, tc.enc)
			}
			dst := []byte("head")
			got, gotUsed, ok := ops.FastCBC(svc, dst, tc.key, tc.c, tc.data, tc.enc)
			if ok != tc.fast {
				t.Fatalf("fastCBC took it: %v, want %v", ok, tc.fast)
			}
			want, wantUsed, wantErr := ops.AppendDataGeneral(svc, []byte("head"), tc.key, a, tc.data, tc.enc)
			if ok {
				if wantErr != nil || !bytes.Equal(got, want) || gotUsed != wantUsed {
					t.Fatalf("fastCBC = %x, %+v; appendData %x, %+v, %v", got, gotUsed, want, wantUsed, wantErr)
				}
			} else if string(got) != "head" || gotUsed != (ops.KeyUsed{}) {
				t.Fatalf("fastCBC declined but returned %q, %+v", got, gotUsed)
			}
			// The public calls answer as the general path, fast or not.
			var pub []byte
			var pubUsed ops.KeyUsed
			var pubErr error
			if tc.enc {
				pub, pubUsed, pubErr = svc.AppendEncryptData([]byte("head"), ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: tc.data, Attributes: a})
			} else {
				pub, pubUsed, pubErr = svc.AppendDecryptData([]byte("head"), ops.DecryptDataInput{KeyIdentifier: tc.key, CipherText: tc.data, Attributes: a})
			}
			if fmt.Sprint(pubErr) != fmt.Sprint(wantErr) || !bytes.Equal(pub, want) || pubUsed != wantUsed {
				t.Fatalf("public call = %x, %+v, %v; appendData %x, %+v, %v", pub, pubUsed, pubErr, want, wantUsed, wantErr)
			}
		})
	}

	// Overlapping buffers: the plaintext in dst's spare capacity, one byte
	// past where the result goes, is declined (nothing written) and refused
	// by the general path; in place (where the result goes) is allowed for
	// encryption.
	buf := make([]byte, 1, 1+len(pt)+1)
	src := append(buf[:2], pt...)[2:]
	before := bytes.Clone(src)
	if out, _, ok := ops.FastCBC(svc, buf[:1], aes128, cbc(iv, ops.PaddingNone), src, true); ok || len(out) != 1 || !bytes.Equal(src, before) {
		t.Fatalf("fastCBC with overlapping buffers: ok %v, %x", ok, out)
	}
	if _, _, err := svc.AppendEncryptData(buf[:1], ops.EncryptDataInput{KeyIdentifier: aes128, PlainText: src, Attributes: ops.DataCipher{Symmetric: cbc(iv, ops.PaddingNone)}}); err == nil {
		t.Fatal("AppendEncryptData with overlapping buffers: no error")
	}
	if out, _, ok := ops.FastCBC(svc, buf[:0], aes128, cbc(iv, ops.PaddingNone), append(buf[:0], pt...), true); !ok || hx(out) != "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2" {
		t.Fatalf("fastCBC in place = %x, %v", out, ok)
	}
}
