package dukpt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"payhsm/hsm/cmac"
	"payhsm/hsm/tdes"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tdesKSN(t testing.TB, s string) TDESKSN {
	t.Helper()
	k, err := ParseTDESKSN(unhex(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func aesKSN(t testing.TB, s string) AESKSN {
	t.Helper()
	k, err := ParseAESKSN(unhex(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ANSI X9.24-1-2009 Annex A.4 test data (as republished in
// openemv/dukpt test/dukpt_tdes_test.c and moov-io/dukpt pkg/des/des_test.go).
const (
	x924BDK = "0123456789ABCDEFFEDCBA9876543210"
	x924IK  = "6AC292FAA1315B4D858AB3A3D7D5933A"
	// ISO 9564 format 0 PIN block of PIN 1234, PAN 4012345678909 (A.4).
	x924PINBlock = "041274EDCBA9876F"
)

func TestTDESInitialKey(t *testing.T) {
	t.Parallel()
	for _, ksn := range []string{"FFFF9876543210E00001", "FFFF9876543210E00002", "FFFF9876543210EFF800"} {
		ik, err := TDESInitialKey(unhex(t, x924BDK), tdesKSN(t, ksn))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(ik)); got != x924IK {
			t.Errorf("KSN %s: IK %s, want %s", ksn, got, x924IK)
		}
	}
}

// X9.24-1-2009 A.4.2 (initial sequence) and A.4.3 (rollover sequence):
// transaction key and PIN block encrypted under its PIN variant.
func TestTDESTransactionKeysAndPINVariant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ksn, key, epb string }{
		{"FFFF9876543210E00001", "042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A"},
		{"FFFF9876543210E00002", "C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107"},
		{"FFFF9876543210E00003", "0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466"},
		{"FFFF9876543210E00004", "279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7"},
		{"FFFF9876543210E00005", "5F8DC6D2C845C125508DDC048093B83F", "5BC0AF22AD87B327"},
		{"FFFF9876543210E00006", "5E415CB0BAF9F03CD0C14B63FB62FF43", "A16DF70AE36158D8"},
		{"FFFF9876543210E00007", "0C8F780B7C8B49D0AE84A9EB2A6CE660", "27711C16CB257F8E"},
		{"FFFF9876543210E00008", "27F66D5244FF62E1AA6F6120EDEB4280", "50E55547A5027551"},
		{"FFFF9876543210E00009", "27E31064FDC565698900E2057F658E7E", "536CF7F678ACFC8D"},
		{"FFFF9876543210E0000A", "6CF2500A22507C7CC776CEADC1E33014", "EDABBA23221833FE"},
		{"FFFF9876543210E0000B", "3E8260BA04B2D620C01482B3819A18B7", "2328981C57B4BDBA"},
		{"FFFF9876543210E0000C", "B716E1E11CF53D80726CAEE75C3A624F", "038D03CC926CF286"},
		{"FFFF9876543210E0000D", "E072EDF95340535FB6C581C58FBF2533", "6C8AA97088B62C68"},
		{"FFFF9876543210E0000E", "A80046087F5B8F245AAD95E18429084F", "F17C9E1D72CD4950"},
		{"FFFF9876543210E0000F", "93DD5B956C4878472E453AAEFD32A5AA", "B170F6E7F7F2F64A"},
		{"FFFF9876543210E00010", "59598DCBD9BD94C094165CE453585F57", "D5D9638559EF53D6"},
		{"FFFF9876543210E00011", "2B5F01F4F0CC05EA639D523231BF1BA2", "D544F8CDD292C863"},
		{"FFFF9876543210E00012", "9CF640F279C2AEE615F725EEEAC2CBAF", "7A21BD10F36DC41D"},
		{"FFFF9876543210E00013", "C3DF489FDF1153B4F03DE97C27DC4C2F", "78649BD17D0DFA60"},
		{"FFFF9876543210E00014", "658488507721B3F14737FA93F923CBD2", "7E7E16EA0C31AD56"},
		{"FFFF9876543210E00015", "E161D1956A61F6D2F37AFD7F9CC3699A", "72105C22EBC791E6"},
		{"FFFF9876543210EFF800", "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35"},
		{"FFFF9876543210EFF801", "5BEE92627E97825C911BF619DF72CA3B", "3A86BF003F835C9D"},
		{"FFFF9876543210EFF802", "64CA2F8AB93F61B01620B00BF77C7301", "3DB977D05C36DF3F"},
		{"FFFF9876543210EFF804", "35A168695B3BA83307E871C42021DD37", "BA83243305712099"},
		{"FFFF9876543210EFF808", "12C380FCB72ED3C26FC6079AF63F4787", "B0DA04AC90A36D85"},
		{"FFFF9876543210EFF810", "D8007C833A1E3C49C6889B97A68C54FF", "2CF02BD9C309EEDA"},
		{"FFFF9876543210EFF820", "A9C9FF9B735FDD49591F296B0BF0FD70", "9D1E2F77AEEE81C6"},
		{"FFFF9876543210EFF840", "0E3E221062CB5E03A384602783A004FA", "40870B0F8BA2011C"},
		{"FFFF9876543210EFF880", "CA8225C587124DFBB87F279C0BE29727", "22E340D6ABB40981"},
		{"FFFF9876543210EFF900", "906AAC1751D4971A144D52C76C6E1F97", "1A4C10AFBA03A430"},
		{"FFFF9876543210EFFA00", "2B9E2CE7C2750337E10B54D2989EA6AF", "849763B43E5F9CFF"},
		{"FFFF9876543210EFFC00", "F9430DF975082491C77BE4EF4FDB91EE", "DEFC6F09F8927B71"},
		{"FFFF9876543210F00000", "AA4D58DB653EC74A48C75F2F047DD2B5", "73EC88AD0AC5830E"},
	} {
		ksn := tdesKSN(t, tc.ksn)
		ik, err := TDESInitialKey(unhex(t, x924BDK), ksn)
		if err != nil {
			t.Fatal(err)
		}
		txn, err := TDESTransactionKey(ik, ksn)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(txn, unhex(t, tc.key)) {
			t.Errorf("KSN %s: transaction key %X, want %s", tc.ksn, txn, tc.key)
			continue
		}
		pek, err := TDESKey(unhex(t, x924BDK), ksn, PINVariant)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := tdes.NewCipher(pek)
		got := make([]byte, 8)
		b.Encrypt(got, unhex(t, x924PINBlock))
		if !bytes.Equal(got, unhex(t, tc.epb)) {
			t.Errorf("KSN %s: encrypted PIN block %X, want %s", tc.ksn, got, tc.epb)
		}
	}
}

// MAC and data variants. Source: moov-io/dukpt pkg/des/des_test.go
// (InitialSequence, X9.24-1-2009 A.4.2 KSNs): data = ASCII "4012345678909D987"
// zero-padded to 24 bytes, TDES-CBC with a zero IV under the data request /
// response key; MAC = ISO 9797-1 algorithm 3 (padding method 1) under the
// MAC request / response key.
func TestTDESMACAndDataVariants(t *testing.T) {
	t.Parallel()
	data := []byte("4012345678909D987")
	for _, tc := range []struct{ ksn, dataReq, dataResp, macReq, macResp string }{
		{"FFFF9876543210E00001", "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F", "1FCC89AF66222F27B903898BB2BC8589CDBFDE5EC6AFCC25", "9CCC78173FC4FB64", "20364223C1FF00FA"},
		{"FFFF9876543210E00002", "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13", "5B692A6B1FDD5E25B0DEFAFDE1672E402F8011360CFF3508", "F608A9BCA6FFC311", "D1FCA6BEF05D24D2"},
		{"FFFF9876543210E00003", "BD751E65F10E75B6C1D5B1D283496A36C2DE21D993C387A7", "345992D4163E4926C927BFD8ABD5D76F087A9CE81D5A27B8", "20B59A4FEAC937E3", "BAD4CC9CC2AE326C"},
		{"FFFF9876543210E00004", "1118F50947441BBDA3C8C70220021A12EC31CC473F7215F4", "418C7413576C0D1819E785D3807AF32334231FDEC23414DB", "C7BFA6CC44161828", "1EB08AEECE6FF0C2"},
		{"FFFF9876543210E00005", "9FD7BD1EC28845ACA93367A9DA9317BD555C6B33AE22D365", "7D4C109E49E83355A556AE949EED359F4404E7A2F0167C00", "0202B96339022058", "5CBE3E81D1D2A0FB"},
	} {
		ksn := tdesKSN(t, tc.ksn)
		padded := make([]byte, 24)
		copy(padded, data)
		for _, d := range []struct {
			v    TDESVariant
			want string
		}{{DataRequestVariant, tc.dataReq}, {DataResponseVariant, tc.dataResp}} {
			k, err := TDESKey(unhex(t, x924BDK), ksn, d.v)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := tdes.NewCipher(k)
			got := make([]byte, 24)
			cipher.NewCBCEncrypter(b, make([]byte, 8)).CryptBlocks(got, padded)
			if !bytes.Equal(got, unhex(t, d.want)) {
				t.Errorf("KSN %s variant %d: ciphertext %X, want %s", tc.ksn, d.v, got, d.want)
			}
		}
		for _, m := range []struct {
			v    TDESVariant
			want string
		}{{MACRequestVariant, tc.macReq}, {MACResponseVariant, tc.macResp}} {
			k, err := TDESKey(unhex(t, x924BDK), ksn, m.v)
			if err != nil {
				t.Fatal(err)
			}
			if got := retailMAC(t, k, padded); !bytes.Equal(got, unhex(t, m.want)) {
				t.Errorf("KSN %s variant %d: MAC %X, want %s", tc.ksn, m.v, got, m.want)
			}
		}
	}
}

// retailMAC is ISO 9797-1 MAC algorithm 3 over block-aligned data, written
// out here independently of hsm/mac.
func retailMAC(t testing.TB, key, data []byte) []byte {
	k1, _ := des.NewCipher(key[:8])
	k2, _ := des.NewCipher(key[8:16])
	h := make([]byte, 8)
	for i := 0; i < len(data); i += 8 {
		for j := range 8 {
			h[j] ^= data[i+j]
		}
		k1.Encrypt(h, h)
	}
	k2.Decrypt(h, h)
	k1.Encrypt(h, h)
	return h
}

// ANSI X9.24-3-2017 Annex B.1 (AES-128 BDK) and the X9.24-3 supplement test
// vectors for the AES-256 BDK, as republished in openemv/dukpt
// test/dukpt_aes_test.c and test/dukpt_aes128_test.c.
const (
	aesBDK128 = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	aesBDK256 = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1"
	aesIKID   = "1234567890123456"
)

func TestAESInitialKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bdk, ik string }{
		{aesBDK128, "1273671EA26AC29AFA4D1084127652A1"},
		{aesBDK256, "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F"},
	} {
		ik, err := AESInitialKey(unhex(t, tc.bdk), [8]byte(unhex(t, aesIKID)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ik, unhex(t, tc.ik)) {
			t.Errorf("BDK %d bytes: IK %X, want %s", len(tc.bdk)/2, ik, tc.ik)
		}
	}
}

// X9.24-3-2017 supplement, AES-128 BDK: intermediate derivation keys of the
// first eight transactions, of the counter rollover at 0x20000 and of the
// last four transaction counters (openemv/dukpt test/dukpt_aes128_test.c).
func TestAESTransactionKey(t *testing.T) {
	t.Parallel()
	ik, err := AESInitialKey(unhex(t, aesBDK128), [8]byte(unhex(t, aesIKID)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ counter, key string }{
		{"00000001", "4F21B565BAD9835E112B6465635EAE44"},
		{"00000002", "2F34D68DE10F68D38091A73B9E7C437C"},
		{"00000003", "031504E530365CF81264238540518318"},
		{"00000004", "0EEFC7ADA628BA68878DA9165A8A1887"},
		{"00000005", "C2A7AC328A5DA2D6002D62465BFC028B"},
		{"00000006", "D30F7D9351DA58448A2F5E92B4EE3B7D"},
		{"00000007", "A8253CEED9AC042C54F75D35C8352278"},
		{"00000008", "718EE6CF0B27E53D5F7AF99C4D8146A2"},
		{"0001FFFE", "E21E8C8D347F8561A2BE752DAA85A111"},
		{"00020000", "F7AE9025468A25D37B7249CFFED224C8"},
		{"00020001", "692C8EA4013645135B36497131DF9D2C"},
		{"FFFE2000", "48E585B694EB0B18D5C35443E163C0BA"},
		{"FFFE4000", "396C2C7CA1EA701C03B86B7D41F0C562"},
		{"FFFE8000", "0387625F189B58AE03EF0E8CCA41105E"},
		{"FFFF0000", "F6BA59389BD14A9855BE9727E7C52E3C"},
	} {
		txn, err := AESTransactionKey(ik, aesKSN(t, aesIKID+tc.counter))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(txn, unhex(t, tc.key)) {
			t.Errorf("counter %s: key %X, want %s", tc.counter, txn, tc.key)
		}
	}
}

// Working keys of usage MAC generation / verification and data encryption /
// decryption, AES-128 from the AES-128 BDK. Source: moov-io/dukpt
// pkg/aes/aes_test.go (InitialSequence): CMAC (NIST SP 800-38B) of ASCII
// "4012345678909D987" under the request (generation) and response
// (verification) MAC keys; the same text zero-padded to 32 bytes, AES-CBC
// with a zero IV, under the request (encrypt) and response (decrypt) keys.
func TestAESWorkingKeys(t *testing.T) {
	t.Parallel()
	data := []byte("4012345678909D987")
	padded := make([]byte, 32)
	copy(padded, data)
	for _, tc := range []struct{ counter, cmacReq, cmacResp, dataReq, dataResp string }{
		{"00000001", "A2EB5C1C35809E58404E873C3C411E31", "DD4E1895FD9BF53D8DAF25568ABF551D", "E5AFA5B408A3310E3D779C8A9A2AE29448BD5B4232582090DB703AF647205A79", "84904DFC6B5201A4F1FE2EAA49E70B8C01838EF53030790FF785D630AB3916B4"},
		{"00000002", "4D104704C53491A60944193DCAF6B411", "008CEAAE2B913BEEE76209EE9406DAC1", "A17A9658EE0F451D6CA11B65B592EF9C5F90BB175D926F1457B63B3273042476", "699ED7BC85994F1C11DE1C40177A629530E85262EA0B02FB80771255DC1F65B6"},
		{"00000005", "C0CE6DA1F4434AD16EEEBF486C9616CD", "4B508F51104D184A9190061ED854200E", "8F222D79AE7F942BF74D3EA9E364C0000D0C94AD7EA0A8CCF23330FCA4B1D0D0", "400E67A22795467C145D7A5D2475DFD8041C233C6E2D004CEDBEBA25AE5CE1A7"},
		{"00000008", "85C7CA68F55F51E7DCAC969B8C111130", "B45399DB90C0BA75DB4B86605758695A", "304EC254A7B528D9892E47F7C1315D498C0D88EA8CD71CA52D38F362721AEA67", "8CD1A54538B9DC79A5DF4544ADE8D1F1A085AC1F89AA59BFF49351A68957DE1B"},
	} {
		ksn := aesKSN(t, aesIKID+tc.counter)
		for _, m := range []struct {
			u    Usage
			want string
		}{{UsageMACGeneration, tc.cmacReq}, {UsageMACVerification, tc.cmacResp}} {
			k, err := AESKey(unhex(t, aesBDK128), ksn, m.u, AES128)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := aes.NewCipher(k)
			if got := cmac.Sum(b, data); !bytes.Equal(got, unhex(t, m.want)) {
				t.Errorf("counter %s usage %#04x: CMAC %X, want %s", tc.counter, m.u, got, m.want)
			}
		}
		for _, d := range []struct {
			u    Usage
			want string
		}{{UsageDataEncrypt, tc.dataReq}, {UsageDataDecrypt, tc.dataResp}} {
			k, err := AESKey(unhex(t, aesBDK128), ksn, d.u, AES128)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := aes.NewCipher(k)
			got := make([]byte, 32)
			cipher.NewCBCEncrypter(b, make([]byte, 16)).CryptBlocks(got, padded)
			if !bytes.Equal(got, unhex(t, d.want)) {
				t.Errorf("counter %s usage %#04x: ciphertext %X, want %s", tc.counter, d.u, got, d.want)
			}
		}
	}
}

// Working key types: every type derivable from an AES-256 BDK has its
// length; distinct usages and types give distinct keys; a stronger working
// key than the BDK is refused.
func TestAESWorkingKeyTypesAndUsages(t *testing.T) {
	t.Parallel()
	ksn := aesKSN(t, aesIKID+"00000001")
	seen := map[string]bool{}
	for _, wt := range []KeyType{TDES2, TDES3, AES128, AES192, AES256} {
		for _, u := range []Usage{UsageKeyEncryption, UsagePINEncryption, UsageMACGeneration, UsageMACVerification,
			UsageMACBoth, UsageDataEncrypt, UsageDataDecrypt, UsageDataBoth} {
			k, err := AESKey(unhex(t, aesBDK256), ksn, u, wt)
			if err != nil {
				t.Fatalf("%s %#04x: %v", wt, u, err)
			}
			if len(k) != wt.Len() {
				t.Errorf("%s: %d bytes", wt, len(k))
			}
			if seen[string(k)] {
				t.Errorf("%s %#04x: key repeats", wt, u)
			}
			seen[string(k)] = true
		}
	}
	for _, wt := range []KeyType{AES192, AES256} {
		if _, err := AESKey(unhex(t, aesBDK128), ksn, UsageDataBoth, wt); err == nil {
			t.Errorf("%s from AES-128 BDK accepted", wt)
		}
	}
	if _, err := AESKey(unhex(t, aesBDK128), ksn, Usage(0x8000), AES128); err == nil {
		t.Error("key derivation usage accepted for a working key")
	}
	if _, err := AESKey(unhex(t, aesBDK128), ksn, UsageDataBoth, KeyType(9)); err == nil {
		t.Error("unknown key type accepted")
	}
}

// Cross-check of the X9.24-3 derivation function against OpenSSL is not
// possible on the command line, so TestAESDeriveBlocks checks its structure
// instead: for a 256-bit key the second block differs from the first only
// by the key block counter (derivation data byte 1).
func TestAESDeriveBlocks(t *testing.T) {
	t.Parallel()
	key := unhex(t, aesBDK128)
	got, err := derive(key, UsageDataBoth, AES256, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(key)
	d := unhex(t, "0101300200040100 0102030405060708")
	want := make([]byte, 32)
	b.Encrypt(want, d)
	d[1] = 2
	b.Encrypt(want[16:], d)
	if !bytes.Equal(got, want) {
		t.Errorf("derive = %X, want %X", got, want)
	}
}

func TestParseKSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hex string
		aes bool
		ok  bool
	}{
		{"FFFF9876543210E00001", false, true},
		{"FFFF9876543210E00000", false, false}, // counter zero
		{"FFFF9876543210E007FF", false, false}, // eleven 1 bits
		{"FFFF9876543210E003FF", false, true},  // ten 1 bits
		{"FFFF9876543210E001", false, false},
		{aesIKID + "00000001", true, true},
		{aesIKID + "00000000", true, false},
		{aesIKID + "0001FFFF", true, false}, // seventeen 1 bits
		{aesIKID + "FFFF0000", true, true},
		{aesIKID + "000001", true, false},
	} {
		var err error
		if tc.aes {
			_, err = ParseAESKSN(unhex(t, tc.hex))
		} else {
			_, err = ParseTDESKSN(unhex(t, tc.hex))
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.hex, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrKSN) {
			t.Errorf("%s: error %v is not ErrKSN", tc.hex, err)
		}
	}
	k := tdesKSN(t, "FFFF9876543210EFF801")
	if k.Counter() != 0x0FF801 {
		t.Errorf("counter %#x", k.Counter())
	}
}

func TestBadKeyLengths(t *testing.T) {
	t.Parallel()
	ksn := tdesKSN(t, "FFFF9876543210E00001")
	if _, err := TDESInitialKey(make([]byte, 24), ksn); err == nil {
		t.Error("24-byte TDES BDK accepted")
	}
	if _, err := TDESTransactionKey(make([]byte, 8), ksn); err == nil {
		t.Error("8-byte IK accepted")
	}
	if _, err := TDESVariantKey(make([]byte, 16), TDESVariant(99)); err == nil {
		t.Error("unknown variant accepted")
	}
	if _, err := AESInitialKey(make([]byte, 15), [8]byte{}); err == nil {
		t.Error("15-byte AES BDK accepted")
	}
}

func FuzzParseKSN(f *testing.F) {
	f.Add([]byte{0xFF, 0xFF, 0x98, 0x76, 0x54, 0x32, 0x10, 0xE0, 0, 1})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseTDESKSN(b); err == nil {
			if k.Counter() == 0 || len(b) != TDESKSNLen {
				t.Fatal("accepted a bad TDES KSN")
			}
			ik := make([]byte, 16)
			if _, err := TDESTransactionKey(ik, k); err != nil {
				t.Fatal(err)
			}
		}
		if k, err := ParseAESKSN(b); err == nil {
			if k.Counter() == 0 || len(b) != AESKSNLen {
				t.Fatal("accepted a bad AES KSN")
			}
			if _, err := AESTransactionKey(make([]byte, 16), k); err != nil {
				t.Fatal(err)
			}
		}
	})
}
