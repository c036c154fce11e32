package ops_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/cmac"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// The append-style operations (AppendMac, CheckMac, AppendEncryptData,
// AppendDecryptData, AppendReEncryptData) are what the host port and the
// HTTP data plane call; GenerateMac, VerifyMac, EncryptData, DecryptData
// and ReEncryptData are wrappers over them, so the known-answer tests in
// data_test.go check their cryptography. These tests check what appending
// adds: the caller's bytes before the result are kept, the result is the
// wrapper's whatever the buffer's capacity, an error leaves the buffer as
// it was, nothing secret is left in its spare capacity, and the hot path
// allocates nothing.

// prefixes are the buffers results are appended to: none, a prefix with no
// spare capacity (append must grow it), and a prefix with room.
func prefixes() [][]byte {
	return [][]byte{nil, []byte("prefix"), append(make([]byte, 0, 256), "prefix"...)}
}

// dirtyRoom is a prefix whose spare capacity holds a pattern, to see what
// an operation leaves there.
func dirtyRoom() []byte {
	b := bytes.Repeat([]byte{0xEE}, 128)
	copy(b, "prefix")
	return b[:6]
}

func TestAppendMacMatchesGenerateMac(t *testing.T) {
	svc := opstest.New(t)
	m1 := opstest.Import(t, svc, sym(keyspec.M1, keyspec.TDES2Key, genVer), "0123456789ABCDEFFEDCBA9876543210")
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	m6 := opstest.Import(t, svc, sym(keyspec.M6, keyspec.AES128, genVer), "2B7E151628AED2A6ABF7158809CF4F3C")
	m6t := opstest.Import(t, svc, sym(keyspec.M6, keyspec.TDES3Key, genVer), "8AA83BF8CBDA10620BC1BF19FBB6CD58BC313D4A371CA8B5")
	aesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.AES128, derive), "FEDCBA9876543210F1F1F1F1F1F1F1F1")
	type macCase struct {
		name, key string
		a         ops.MacAttributes
	}
	cases := []macCase{
		{"ISO9797-1", m1, ops.MacAttributes{Algorithm: ops.MacISO9797Alg1}},
		{"ISO9797-3", m3, ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}},
		{"CMAC-AES", m6, ops.MacAttributes{Algorithm: ops.MacCMAC}},
		{"CMAC-TDES", m6t, ops.MacAttributes{Algorithm: ops.MacCMAC}},
		{"DUKPT-CMAC", aesBDK, ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: hb("123456789012345600000001"), Variant: ops.DukptRequest}}},
	}
	for _, alg := range []keyspec.Algorithm{keyspec.HMACSHA224, keyspec.HMACSHA256, keyspec.HMACSHA384, keyspec.HMACSHA512} {
		cases = append(cases, macCase{string(alg), createKey(t, svc, sym(keyspec.M7, alg, genVer)), ops.MacAttributes{Algorithm: ops.MacHMAC}})
	}
	for _, tc := range cases {
		for _, n := range []int{0, 1, 8, 15, 16, 17, 64, 200} {
			msg := bytes.Repeat([]byte{byte(n) ^ 0x5A}, n)
			if n == 0 {
				msg = []byte{} // refused by every algorithm alike
			}
			for _, macLen := range []int{0, 4, 8, 1000} {
				in := ops.GenerateMacInput{KeyIdentifier: tc.key, MessageData: msg, Attributes: tc.a, MacLength: macLen}
				want, wantErr := svc.GenerateMac(in)
				for _, p := range append(prefixes(), dirtyRoom()) {
					orig := slices.Clone(p)
					got, k, err := svc.AppendMac(p, in)
					name := fmt.Sprintf("%s %d bytes MacLength %d prefix %q cap %d", tc.name, n, macLen, orig, cap(p))
					if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
						t.Fatalf("%s: AppendMac error %v, GenerateMac %v", name, err, wantErr)
					}
					if err != nil {
						if !bytes.Equal(got, orig) || len(got) != len(orig) {
							t.Fatalf("%s: AppendMac after an error = %q, want the prefix", name, got)
						}
						continue
					}
					if !bytes.Equal(got[:len(orig)], orig) || !bytes.Equal(got[len(orig):], want.Mac) || k.KeyARN != want.KeyARN || k.KCV != want.KCV {
						t.Fatalf("%s: AppendMac = %x %+v, GenerateMac %x %s %s", name, got, k, want.Mac, want.KeyARN, want.KCV)
					}
					checkMacRoom(t, svc, name, ops.VerifyMacInput{KeyIdentifier: tc.key, MessageData: msg, Mac: want.Mac, Attributes: tc.a}, k)
				}
			}
		}
	}
}

// checkMacRoom checks CheckMac with and without room against VerifyMac,
// for the MAC in and an altered one, and that it clears its working room.
func checkMacRoom(t *testing.T, svc *ops.Service, name string, in ops.VerifyMacInput, key ops.KeyUsed) {
	t.Helper()
	bad := in
	bad.Mac = slices.Clone(in.Mac)
	bad.Mac[len(bad.Mac)-1] ^= 1
	for _, v := range []ops.VerifyMacInput{in, bad} {
		r, wantErr := svc.VerifyMac(v)
		room := dirtyRoom()
		k, err := svc.CheckMac(room, v)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("%s: CheckMac %v, VerifyMac %v", name, err, wantErr)
		}
		if err == nil && (k != key || r.KeyARN != k.KeyARN || r.KCV != k.KCV) {
			t.Fatalf("%s: CheckMac key %+v, VerifyMac %+v", name, k, r)
		}
		if spare := room[len(room):cap(room)]; !bytes.Equal(spare[:64], make([]byte, 64)) || bytes.Count(spare[64:], []byte{0xEE}) != len(spare)-64 {
			t.Fatalf("%s: CheckMac left %x in the spare room (want 64 zero bytes, then the caller's)", name, spare)
		}
		if k2, err2 := svc.CheckMac(nil, v); (err2 == nil) != (err == nil) || k2 != k {
			t.Fatalf("%s: CheckMac(nil) %+v %v, with room %+v %v", name, k2, err2, k, err)
		}
	}
}

func TestAppendDataMatchesWrappers(t *testing.T) {
	svc := opstest.New(t)
	keys := map[string]string{
		"TDES2":  opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), "0123456789ABCDEFFEDCBA9876543210"),
		"AES128": opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C"),
	}
	tdesBDK := opstest.Import(t, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	type dataCase struct {
		name, key string
		c         ops.DataCipher
	}
	var cases []dataCase
	for name, k := range keys {
		bs := 16
		if name == "TDES2" {
			bs = 8
		}
		for _, mode := range []ops.CipherMode{ops.ModeECB, ops.ModeCBC, ops.ModeCFB, ops.ModeCFB1, ops.ModeCFB8, ops.ModeCFB64, ops.ModeCFB128, ops.ModeOFB} {
			for _, pad := range []ops.Padding{ops.PaddingNone, ops.PaddingPKCS1, ops.PaddingOAEPSHA1} {
				c := &ops.SymmetricCipher{Mode: mode, Padding: pad}
				if mode != ops.ModeECB {
					c.IV = bytes.Repeat([]byte{0x3C}, bs)
				}
				cases = append(cases, dataCase{fmt.Sprintf("%s %v %v", name, mode, pad), k, ops.DataCipher{Symmetric: c}})
			}
		}
	}
	cases = append(cases, dataCase{"TDES DUKPT", tdesBDK, ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: hb("FFFF9876543210E00001"), Variant: ops.DukptRequest}}})
	for _, tc := range cases {
		for _, n := range []int{0, 5, 8, 16, 31, 32, 64} {
			data := bytes.Repeat([]byte{byte(n) ^ 0xA5}, n)
			enc := ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: data, Attributes: tc.c}
			want, wantErr := svc.EncryptData(enc)
			for _, p := range append(prefixes(), dirtyRoom()) {
				name := fmt.Sprintf("%s %d bytes prefix %q cap %d", tc.name, n, p, cap(p))
				got, k, err := svc.AppendEncryptData(p, enc)
				checkAppended(t, "AppendEncryptData "+name, p, got, err, want, wantErr, k)
				if wantErr != nil {
					continue
				}
				dec := ops.DecryptDataInput{KeyIdentifier: tc.key, CipherText: want.Data, Attributes: tc.c}
				back, backErr := svc.DecryptData(dec)
				if backErr != nil || !bytes.Equal(back.Data, data) {
					t.Fatalf("%s: DecryptData = %x, %v", name, back, backErr)
				}
				got, k, err = svc.AppendDecryptData(p, dec)
				checkAppended(t, "AppendDecryptData "+name, p, got, err, back, nil, k)
				re := ops.ReEncryptDataInput{IncomingKeyIdentifier: tc.key, OutgoingKeyIdentifier: keys["AES128"], CipherText: want.Data,
					Incoming: tc.c, Outgoing: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, Padding: ops.PaddingPKCS1}}}
				reWant, reErr := svc.ReEncryptData(re)
				got, k, err = svc.AppendReEncryptData(p, re)
				checkAppended(t, "AppendReEncryptData "+name, p, got, err, reWant, reErr, k)
			}
		}
	}
}

// checkAppended compares an append-style result (got, err, k appended to
// prefix p) with its wrapper's (want, wantErr).
func checkAppended(t *testing.T, name string, p, got []byte, err error, want *ops.DataOutput, wantErr error, k ops.KeyUsed) {
	t.Helper()
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%s: error %v, the wrapper's %v", name, err, wantErr)
	}
	if err != nil {
		if len(got) != len(p) || !bytes.Equal(got, p) {
			t.Fatalf("%s: after an error %q, want the prefix %q", name, got, p)
		}
		return
	}
	if !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], want.Data) || k.KeyARN != want.KeyARN || k.KCV != want.KCV {
		t.Fatalf("%s: %x %+v, the wrapper's %x %s %s", name, got, k, want.Data, want.KeyARN, want.KCV)
	}
}

// A decryption whose padding does not check leaves nothing of the
// deciphered data in the caller's buffer.
func TestAppendDecryptDataClearsOnError(t *testing.T) {
	svc := opstest.New(t)
	k := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	c := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, Padding: ops.PaddingPKCS1}}
	raw := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}
	// 32 bytes enciphered without padding: their last byte is no PKCS#7 pad.
	pt := bytes.Repeat([]byte{0x41}, 32)
	ct, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k, PlainText: pt, Attributes: raw})
	if err != nil {
		t.Fatal(err)
	}
	room := dirtyRoom()
	got, _, err := svc.AppendDecryptData(room, ops.DecryptDataInput{KeyIdentifier: k, CipherText: ct.Data, Attributes: c})
	if f := fault.As(err); f == nil || f.Subject != fault.SubjectData {
		t.Fatalf("bad padding: %v", err)
	}
	if !bytes.Equal(got, []byte("prefix")) {
		t.Fatalf("after the error: %q", got)
	}
	if spare := room[len(room):cap(room)]; bytes.Contains(spare, pt[:8]) || !bytes.Equal(spare[:32], make([]byte, 32)) {
		t.Fatalf("the deciphered data is left in the spare room: %x", spare)
	}
}

// TestAppendNoAllocs: with a cached key and room in the caller's buffer,
// the append-style operations allocate nothing.
func TestAppendNoAllocs(t *testing.T) {
	svc := opstest.New(t)
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	m6 := opstest.Import(t, svc, sym(keyspec.M6, keyspec.AES128, genVer), "2B7E151628AED2A6ABF7158809CF4F3C")
	m7 := createKey(t, svc, sym(keyspec.M7, keyspec.HMACSHA256, genVer))
	d0 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	data := bytes.Repeat([]byte{0xA5}, 64)
	buf := make([]byte, 0, 256)
	// The attributes are part of the input, whose identifier the key cache
	// may keep, so what they point to escapes: made once, as a caller
	// keeps them with its request.
	cbc := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}
	cbcPad := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, Padding: ops.PaddingPKCS1}}
	ecb := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"AppendMac ISO9797-3", func() error { return appendMac(svc, buf, m3, data, ops.MacISO9797Alg3) }},
		{"AppendMac CMAC", func() error { return appendMac(svc, buf, m6, data, ops.MacCMAC) }},
		{"AppendMac HMAC-SHA256", func() error { return appendMac(svc, buf, m7, data, ops.MacHMAC) }},
		{"CheckMac CMAC", func() error {
			m, _, err := svc.AppendMac(buf, ops.GenerateMacInput{KeyIdentifier: m6, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
			if err != nil {
				return err
			}
			_, err = svc.CheckMac(buf[len(m):len(m)], ops.VerifyMacInput{KeyIdentifier: m6, MessageData: data, Mac: m, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
			return err
		}},
		{"AppendEncryptData CBC", func() error {
			_, _, err := svc.AppendEncryptData(buf, ops.EncryptDataInput{KeyIdentifier: d0, PlainText: data, Attributes: cbc})
			return err
		}},
		{"AppendEncryptData CBC PKCS#7", func() error {
			_, _, err := svc.AppendEncryptData(buf, ops.EncryptDataInput{KeyIdentifier: d0, PlainText: data[:61], Attributes: cbcPad})
			return err
		}},
		{"AppendDecryptData ECB", func() error {
			_, _, err := svc.AppendDecryptData(buf, ops.DecryptDataInput{KeyIdentifier: d0, CipherText: data, Attributes: ecb})
			return err
		}},
	} {
		if err := tc.f(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if raceEnabled { // the race detector makes sync.Pool (HMAC's keyed states) drop what it holds
			continue
		}
		if n := testing.AllocsPerRun(100, func() { _ = tc.f() }); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, n)
		}
	}
}

func appendMac(svc *ops.Service, buf []byte, key string, data []byte, a ops.MacAlgorithm) error {
	_, _, err := svc.AppendMac(buf, ops.GenerateMacInput{KeyIdentifier: key, MessageData: data, Attributes: ops.MacAttributes{Algorithm: a}})
	return err
}

// FuzzAppendData compares AppendEncryptData and AppendDecryptData under an
// AES key with crypto/cipher's modes (the reference), padding the
// reference's input with PKCS#7 (RFC 5652 6.3) itself, and checks that
// the caller's prefix is kept.
func FuzzAppendData(f *testing.F) {
	f.Add([]byte("sixteen byte msg"), uint8(1), false, 3)
	f.Add([]byte("an odd-length message"), uint8(0), true, 0)
	svc := opstest.New(f)
	const keyHex = "2B7E151628AED2A6ABF7158809CF4F3C"
	key := opstest.Import(f, svc, sym(keyspec.D0, keyspec.AES128, encDec), keyHex)
	b, err := aes.NewCipher(hb(keyHex))
	if err != nil {
		f.Fatal(err)
	}
	iv := hb("000102030405060708090A0B0C0D0E0F")
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, pkcs7 bool, prefix int) {
		modes := []ops.CipherMode{ops.ModeECB, ops.ModeCBC, ops.ModeCFB128, ops.ModeOFB}
		m := modes[int(mode)%len(modes)]
		c := &ops.SymmetricCipher{Mode: m}
		if m != ops.ModeECB {
			c.IV = iv
		}
		in := data
		if pkcs7 {
			c.Padding = ops.PaddingPKCS1
			n := 16 - len(data)%16
			in = append(slices.Clone(data), bytes.Repeat([]byte{byte(n)}, n)...)
		}
		want := make([]byte, len(in))
		refOK := len(in) > 0 && len(in)%16 == 0
		if refOK {
			switch m {
			case ops.ModeECB:
				for i := 0; i < len(in); i += 16 {
					b.Encrypt(want[i:i+16], in[i:i+16])
				}
			case ops.ModeCBC:
				cipher.NewCBCEncrypter(b, iv).CryptBlocks(want, in)
			case ops.ModeCFB128:
				cipher.NewCFBEncrypter(b, iv).XORKeyStream(want, in) //nolint:staticcheck // SA1019: the reference CFB128
			case ops.ModeOFB:
				cipher.NewOFB(b, iv).XORKeyStream(want, in) //nolint:staticcheck // SA1019: the reference OFB
			}
		}
		p := bytes.Repeat([]byte{0x77}, max(0, prefix%40))
		got, _, err := svc.AppendEncryptData(p, ops.EncryptDataInput{KeyIdentifier: key, PlainText: data, Attributes: ops.DataCipher{Symmetric: c}})
		if !refOK {
			if err == nil {
				t.Fatalf("%v: %d bytes enciphered: %x", m, len(data), got)
			}
			return
		}
		if err != nil || !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], want) {
			t.Fatalf("%v: %x, %v; crypto/cipher %x", m, got, err, want)
		}
		back, _, err := svc.AppendDecryptData(p[:len(p):len(p)], ops.DecryptDataInput{KeyIdentifier: key, CipherText: want, Attributes: ops.DataCipher{Symmetric: c}})
		if err != nil || !bytes.Equal(back[len(p):], data) || !bytes.Equal(back[:len(p)], p) {
			t.Fatalf("%v: deciphered %x, %v; want %x", m, back, err, data)
		}
	})
}

// FuzzAppendMac compares AppendMac's CMAC and ISO 9797-1 algorithm 1 with
// references (hsm/cmac's one-shot Sum; the last block of crypto/cipher's
// CBC encryption of the message zero-padded, ISO 9797-1 padding method 1)
// on fuzzed messages and prefixes.
func FuzzAppendMac(f *testing.F) {
	f.Add([]byte("a message"), 0)
	f.Add(bytes.Repeat([]byte{1}, 64), 17)
	svc := opstest.New(f)
	const aesHex, tdesHex = "2B7E151628AED2A6ABF7158809CF4F3C", "0123456789ABCDEFFEDCBA9876543210"
	m6 := opstest.Import(f, svc, sym(keyspec.M6, keyspec.AES128, genVer), aesHex)
	m1 := opstest.Import(f, svc, sym(keyspec.M1, keyspec.TDES2Key, genVer), tdesHex)
	ab, err := aes.NewCipher(hb(aesHex))
	if err != nil {
		f.Fatal(err)
	}
	db, err := des.NewTripleDESCipher(hb(tdesHex + tdesHex[:16]))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte, prefix int) {
		if len(msg) == 0 {
			return
		}
		p := bytes.Repeat([]byte{0x77}, max(0, prefix%40))
		got, _, err := svc.AppendMac(p, ops.GenerateMacInput{KeyIdentifier: m6, MessageData: msg, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
		if want := cmac.Sum(ab, msg); err != nil || !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], want) {
			t.Fatalf("CMAC %x, %v; reference %x", got, err, want)
		}
		padded := append(slices.Clone(msg), make([]byte, (8-len(msg)%8)%8)...)
		cbc := make([]byte, len(padded))
		cipher.NewCBCEncrypter(db, make([]byte, 8)).CryptBlocks(cbc, padded)
		want := cbc[len(cbc)-8:]
		got, _, err = svc.AppendMac(p[:len(p):len(p)], ops.GenerateMacInput{KeyIdentifier: m1, MessageData: msg, Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg1}})
		if err != nil || !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], want) {
			t.Fatalf("ISO 9797-1 algorithm 1: %x, %v; reference %x", got, err, want)
		}
	})
}

// TestPeekedKeysWhileDropped: AppendEncryptData, AppendDecryptData and
// AppendMac (CMAC) with cached keys, which take them without a reference
// (peekWorking), give the known answers in every iteration while another
// goroutine drops every working key over and over (zeroing the material,
// clearing the CMAC subkeys). Under -race it also checks that the peeking
// paths read nothing the drops write. Then a key whose usage was stopped is refused at
// once, through the same path.
func TestPeekedKeysWhileDropped(t *testing.T) {
	svc := opstest.New(t)
	const keyHex = "2B7E151628AED2A6ABF7158809CF4F3C"
	d0 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.AES128, encDec), keyHex)
	m6 := opstest.Import(t, svc, sym(keyspec.M6, keyspec.AES128, genVer), keyHex)
	blk, err := aes.NewCipher(hb(keyHex))
	if err != nil {
		t.Fatal(err)
	}
	data := hb("6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51")
	wantCT := make([]byte, len(data))
	cipher.NewCBCEncrypter(blk, make([]byte, 16)).CryptBlocks(wantCT, data)
	wantMac := cmac.Sum(blk, data)
	encIn := ops.EncryptDataInput{KeyIdentifier: d0, PlainText: data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}}
	decIn := ops.DecryptDataInput{KeyIdentifier: d0, CipherText: wantCT, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}}
	macIn := ops.GenerateMacInput{KeyIdentifier: m6, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}}

	// The loop below runs until the dropper has dropped the keys many
	// times (at least 3,000 iterations): on a loaded machine the dropper
	// may not be scheduled at all during a fixed count.
	var drops atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				ops.DropWorkingKeys(svc)
				drops.Add(1)
			}
		}
	}()
	buf := make([]byte, 0, 64)
	for i := 0; i < 3000 || drops.Load() < 100; i++ {
		if i == 10_000_000 {
			t.Fatal("the keys were never dropped during the test")
		}
		if i%256 == 0 {
			runtime.Gosched() // let the dropper run even on one processor
		}
		ct, _, err := svc.AppendEncryptData(buf[:0], encIn)
		if err != nil || !bytes.Equal(ct, wantCT) {
			t.Fatalf("iteration %d: AppendEncryptData = %x, %v; want %x", i, ct, err, wantCT)
		}
		pt, _, err := svc.AppendDecryptData(buf[:0], decIn)
		if err != nil || !bytes.Equal(pt, data) {
			t.Fatalf("iteration %d: AppendDecryptData = %x, %v; want %x", i, pt, err, data)
		}
		m, _, err := svc.AppendMac(buf[:0], macIn)
		if err != nil || !bytes.Equal(m, wantMac) {
			t.Fatalf("iteration %d: AppendMac = %x, %v; want %x", i, m, err, wantMac)
		}
	}
	close(stop)
	<-done
	for _, k := range []string{d0, m6} {
		if _, err := svc.StopKeyUsage(k); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := svc.AppendEncryptData(buf[:0], encIn); fault.As(err).Violation != fault.ViolationState {
		t.Fatalf("AppendEncryptData after StopKeyUsage: %v", err)
	}
	if _, _, err := svc.AppendMac(buf[:0], macIn); fault.As(err).Violation != fault.ViolationState {
		t.Fatalf("AppendMac after StopKeyUsage: %v", err)
	}
}
