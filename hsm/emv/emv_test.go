package emv

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"payhsm/hsm/tdes"

	"payhsm/internal/openssltest"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kcv2 is pyemv's tools.key_check_digits(key, 2): TDES-encrypt zeros, 2 bytes.
func kcv2(t testing.TB, key []byte) string {
	t.Helper()
	b, err := tdes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	b.Encrypt(out, make([]byte, 8))
	return strings.ToUpper(hex.EncodeToString(out[:2]))
}

const (
	issAC  = "0123456789ABCDEFFEDCBA9876543210"
	issSMI = "FEDCBA98765432100123456789ABCDEF"
	issSMC = "89ABCDEF0123456776543210FEDCBA98"
)

// Source: knovichikhin/pyemv, pyemv/kd.py docstrings (derive_icc_mk_a,
// derive_icc_mk_b examples and the module example), EMV Book 2 A1.4.
func TestICCMasterKeyDocExamples(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		opt      Option
		pan, psn string
		want     string
	}{
		{OptionA, "12345678901234567", "01", "73AD54688CEF2934B0979857E3C719F1"},
		{OptionB, "12345678901234567", "01", "AD406D7F6D7570916D75E5DCAB8CF737"},
		{OptionA, "99012345678901234", "45", "67F8292358083E5EA7AB7FDA58D53B6B"},
	} {
		mk, err := ICCMasterKey(unhex(t, issAC), c.opt, c.pan, c.psn)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ToUpper(hex.EncodeToString(mk)); got != c.want {
			t.Errorf("%v %s/%s: %s, want %s", c.opt, c.pan, c.psn, got, c.want)
		}
	}
}

// Source: knovichikhin/pyemv tests/test_kd_hsm.py (vectors produced with a
// payment HSM): option A/B master keys, common session keys, ARQC (padding
// method 2, MAC algorithm 3), ARPC methods 1 and 2.
func TestPyemvHSMVectors(t *testing.T) {
	t.Parallel()
	const r = "1234567890123456"
	const ct = "0123456789ABCDEF0123456789ABCDEF"
	for _, c := range []struct {
		name             string
		opt              Option
		pan, psn         string
		mkKCV            string // "" = not published
		r                string
		skKCV            string
		data             string
		arqc             string
		arpc1MK, arpc1SK string // ARPC method 1, ARC 0000, under MK / SK
		csu, pad, arpc2  string
	}{
		{name: "A psn45", opt: OptionA, pan: "12345678901234567", psn: "45", mkKCV: "FF08", r: r, skKCV: "DF82", data: ct,
			arqc: "19C1FBC83EBDC0D5", arpc1MK: "78A372523FA35A03", arpc1SK: "C3620580668E5B65"},
		{name: "A no psn", opt: OptionA, pan: "12345678901234567", psn: "00", r: r, skKCV: "3F4F", data: ct,
			arqc: "8698A7319324FD93", arpc1MK: "BEA11C8F4A47EF6F"},
		{name: "B pan16", opt: OptionB, pan: "1234567890123456", psn: "00", mkKCV: "BAB0", r: r, skKCV: "BC19", data: ct,
			arqc: "0CE77D211CB5459A", csu: "00000000", arpc2: "8CD9AA5D"},
		{name: "B pan17 psn45", opt: OptionB, pan: "12345678901234567", psn: "45", mkKCV: "0BAF", r: r, skKCV: "4262", data: ct,
			arqc: "5760EE07B4FA65D1", csu: "00000000", arpc2: "106B81D9"},
		{name: "B pan17 no psn", opt: OptionB, pan: "12345678901234567", psn: "00", mkKCV: "4626", r: r, skKCV: "7F36", data: ct,
			arqc: "0BAA251EA8989442", csu: "00000000", arpc2: "C1C41F3A"},
		{name: "B pan18", opt: OptionB, pan: "123456789012345679", psn: "00", mkKCV: "C2F3", r: r, skKCV: "7C35", data: ct,
			arqc: "DC95BCE3EBBE0296", csu: "00000000", arpc2: "ECCA0C4B"},
		{name: "B sha letters", opt: OptionB, pan: "000000000000000005", psn: "23", mkKCV: "DD73", r: "001C000000000000", skKCV: "04F8",
			data: "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B800",
			arqc: "8CAD6F2489C640B1", csu: "00000000", pad: "12345678", arpc2: "E39F1876"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mk, err := ICCMasterKey(unhex(t, issAC), c.opt, c.pan, c.psn)
			if err != nil {
				t.Fatal(err)
			}
			if c.mkKCV != "" && kcv2(t, mk) != c.mkKCV {
				t.Errorf("MK KCV %s, want %s", kcv2(t, mk), c.mkKCV)
			}
			sk, err := CommonSessionKey(mk, [8]byte(unhex(t, c.r)))
			if err != nil {
				t.Fatal(err)
			}
			if kcv2(t, sk) != c.skKCV {
				t.Errorf("SK KCV %s, want %s", kcv2(t, sk), c.skKCV)
			}
			ac, err := Cryptogram(sk, unhex(t, c.data), PadMethod2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ac, unhex(t, c.arqc)) {
				t.Fatalf("ARQC %X, want %s", ac, c.arqc)
			}
			arqc := [8]byte(ac)
			for _, a := range []struct {
				key  []byte
				want string
			}{{mk, c.arpc1MK}, {sk, c.arpc1SK}} {
				if a.want == "" {
					continue
				}
				got, err := ARPCMethod1(a.key, arqc, [2]byte{})
				if err != nil || !bytes.Equal(got, unhex(t, a.want)) {
					t.Errorf("ARPC1 %X, want %s (%v)", got, a.want, err)
				}
			}
			if c.arpc2 != "" {
				got, err := ARPCMethod2(sk, arqc, [4]byte(unhex(t, c.csu)), unhex(t, c.pad))
				if err != nil || !bytes.Equal(got, unhex(t, c.arpc2)) {
					t.Errorf("ARPC2 %X, want %s (%v)", got, c.arpc2, err)
				}
			}
		})
	}
}

// Source: knovichikhin/pyemv pyemv/kd.py docstrings of derive_common_sk and
// derive_visa_sm_sk (MK 0123456789ABCDEFFEDCBA9876543210, ATC 001C).
func TestSessionKeyDocExamples(t *testing.T) {
	t.Parallel()
	mk := unhex(t, issAC)
	atc := [2]byte{0x00, 0x1C}
	sk, err := CommonSessionKey(mk, ATCDiversifier(atc))
	if err != nil || !bytes.Equal(sk, unhex(t, "E9FB384AF807B940FEDCEA613461B0C4")) {
		t.Errorf("CSK %X %v", sk, err)
	}
	sk, err = VisaSMSessionKey(mk, atc)
	if err != nil || !bytes.Equal(sk, unhex(t, "0123456789ABCDF2FEDCBA987654CDF2")) {
		t.Errorf("Visa SM SK %X %v", sk, err)
	}
}

// Transaction data of pyemv's CVN tests: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36.
const cvnData = "000000004000" + "000000000000" + "0124" + "8000048000" + "0124" + "191105" + "01" + "52BF4585" + "1800" + "001C"

// Source: knovichikhin/pyemv tests/test_cvn_hsm.py test_visa_cvn10: ICC MK
// used directly, data ‖ CVR padded with zeros (method 1), ARPC method 1.
func TestVisaCVN10(t *testing.T) {
	t.Parallel()
	mk, err := ICCMasterKey(unhex(t, issAC), OptionA, "1234567890123456", "00")
	if err != nil {
		t.Fatal(err)
	}
	if kcv2(t, mk) != "BAB0" {
		t.Fatalf("MK KCV %s", kcv2(t, mk))
	}
	key, err := ACSessionKey(mk, SchemeVisa, [2]byte{0x00, 0x1C}, [4]byte{})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := Cryptogram(key, unhex(t, cvnData+"03A06010"), PadMethod1)
	if err != nil || !bytes.Equal(ac, unhex(t, "29CCA15AE665FA2E")) {
		t.Fatalf("ARQC %X %v", ac, err)
	}
	arpc, err := ARPCMethod1(key, [8]byte(ac), [2]byte{0x30, 0x30})
	if err != nil || !bytes.Equal(arpc, unhex(t, "28993816AFAE4AEB")) {
		t.Fatalf("ARPC %X %v", arpc, err)
	}
	smi, _ := ICCMasterKey(unhex(t, issSMI), OptionA, "1234567890123456", "00")
	smc, _ := ICCMasterKey(unhex(t, issSMC), OptionA, "1234567890123456", "00")
	if kcv2(t, smi) != "F010" || kcv2(t, smc) != "B154" {
		t.Fatalf("SMI/SMC KCV %s %s", kcv2(t, smi), kcv2(t, smc))
	}
	sk, _ := SMSessionKey(smi, SchemeVisa, [8]byte(ac), [2]byte{0x00, 0x1C})
	if kcv2(t, sk) != "DB10" {
		t.Fatalf("SMI SK KCV %s", kcv2(t, sk))
	}
	sk, _ = SMSessionKey(smc, SchemeVisa, [8]byte(ac), [2]byte{0x00, 0x1C})
	if kcv2(t, sk) != "6D04" {
		t.Fatalf("SMC SK KCV %s", kcv2(t, sk))
	}
	// Command MAC for APPLICATION UNBLOCK: header ‖ ATC ‖ ARQC, method 2.
	sk, _ = SMSessionKey(smi, SchemeVisa, [8]byte(ac), [2]byte{0x00, 0x1C})
	mac, err := Cryptogram(sk, unhex(t, "8418000008"+"001C"+"29CCA15AE665FA2E"), PadMethod2)
	if err != nil || !bytes.Equal(mac, unhex(t, "DB56BA60087CEFD3")) {
		t.Fatalf("command MAC %X %v", mac, err)
	}
}

// Source: knovichikhin/pyemv tests/test_cvn_hsm.py test_visa_cvn18: option
// B, common session key, data ‖ IAD padded with method 2, ARPC method 2.
func TestVisaCVN18(t *testing.T) {
	t.Parallel()
	mk, err := ICCMasterKey(unhex(t, issAC), OptionB, "1234567890123456", "00")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ACSessionKey(mk, SchemeEMVCommon, [2]byte{0x00, 0x1C}, [4]byte{})
	if err != nil || kcv2(t, sk) != "22C8" {
		t.Fatalf("SK KCV %s %v", kcv2(t, sk), err)
	}
	ac, err := Cryptogram(sk, unhex(t, cvnData+"06011203A0B800"), PadMethod2)
	if err != nil || !bytes.Equal(ac, unhex(t, "7A788EA6B8A3E733")) {
		t.Fatalf("ARQC %X %v", ac, err)
	}
	arpc, err := ARPCMethod2(sk, [8]byte(ac), [4]byte{}, nil)
	if err != nil || !bytes.Equal(arpc, unhex(t, "9AF514C1")) {
		t.Fatalf("ARPC %X %v", arpc, err)
	}
}

// Source: knovichikhin/pyemv tests/test_cvn_hsm.py test_interac_cvn133:
// Mastercard session key (ATC ‖ 0000 ‖ UN), ARPC method 1 under the session
// key, and common secure-messaging session keys diversified by the ARQC.
func TestMastercardSKD(t *testing.T) {
	t.Parallel()
	pan, psn := "1234567890123456", "00"
	mk, _ := ICCMasterKey(unhex(t, issAC), OptionA, pan, psn)
	atc, un := [2]byte{0x00, 0x1C}, [4]byte{0xAB, 0xCD, 0xEF, 0x12}
	sk, err := ACSessionKey(mk, SchemeMastercard, atc, un)
	if err != nil || kcv2(t, sk) != "2FD5" {
		t.Fatalf("SK KCV %s %v", kcv2(t, sk), err)
	}
	data := "000000009999" + "000000000000" + "0124" + "8000000000" + "0124" + "209906" + "00" + "ABCDEF12" + "1800" + "001C" +
		"1501850440B100000000B00000000000000000000000"
	ac, err := Cryptogram(sk, unhex(t, data), PadMethod2)
	if err != nil || !bytes.Equal(ac, unhex(t, "18932FECA2D84326")) {
		t.Fatalf("ARQC %X %v", ac, err)
	}
	arpc, err := ARPCMethod1(sk, [8]byte(ac), [2]byte{})
	if err != nil || !bytes.Equal(arpc, unhex(t, "4DF171A49396C363")) {
		t.Fatalf("ARPC %X %v", arpc, err)
	}
	smi, _ := ICCMasterKey(unhex(t, issSMI), OptionA, pan, psn)
	smc, _ := ICCMasterKey(unhex(t, issSMC), OptionA, pan, psn)
	for _, c := range []struct {
		mk   []byte
		want string
	}{{smi, "08DF"}, {smc, "748D"}} {
		k, err := SMSessionKey(c.mk, SchemeMastercard, [8]byte(ac), atc)
		if err != nil || kcv2(t, k) != c.want {
			t.Errorf("SM SK KCV %s, want %s (%v)", kcv2(t, k), c.want, err)
		}
	}
}

// Cross-check: for a one-block message MAC algorithm 3 equals two-key TDES
// ECB encryption; OpenSSL computes the latter.
func TestMACMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	key, msg := issSMI, "8418000008001C29"
	want := strings.ToUpper(hex.EncodeToString(openssltest.Enc(t, "des-ede-ecb", key, unhex(t, msg))))
	got, err := MAC(unhex(t, key), unhex(t, msg))
	if err != nil || strings.ToUpper(hex.EncodeToString(got)) != want {
		t.Fatalf("MAC %X, openssl %s (%v)", got, want, err)
	}
}

// The tree derivation checked against its definition computed step by step
// for a 2-level tree (IK(1), IK(2), SK = IK(2) ⊕ IK(0)), and properties of
// the production parameters: distinct keys per ATC, odd parity.
func TestTreeSessionKey(t *testing.T) {
	t.Parallel()
	mk := unhex(t, issAC)
	iv := make([]byte, 16)
	for _, n := range []int{0, 1, 2, 3, 7, 15} {
		atc := [2]byte{0, byte(n)}
		got, err := treeSessionKey(mk, atc, 4, 2, iv)
		if err != nil {
			t.Fatal(err)
		}
		ik1 := f(t, mk, iv, byte((n/4)%4))
		ik2 := f(t, ik1, mk, byte(n%4))
		want := make([]byte, 16)
		for i := range want {
			want[i] = ik2[i] ^ mk[i]
		}
		tdes.FixParity(want)
		if n >= 16 {
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("ATC %d: %X, want %X", n, got, want)
		}
	}
	seen := map[string]bool{}
	for _, n := range []int{0, 1, 4, 255, 256, 0x1234, 0xFFFF} {
		sk, err := TreeSessionKey(mk, [2]byte{byte(n >> 8), byte(n)})
		if err != nil {
			t.Fatal(err)
		}
		if !tdes.CheckParity(sk) || seen[string(sk)] {
			t.Fatalf("ATC %d: bad or repeated key", n)
		}
		seen[string(sk)] = true
	}
	if _, err := treeSessionKey(mk, [2]byte{0, 4}, 2, 2, iv); err == nil {
		t.Fatal("ATC 4 accepted in a tree with 4 leaves")
	}
}

func f(t *testing.T, x, y []byte, j byte) []byte {
	b, err := tdes.NewCipher(x)
	if err != nil {
		t.Fatal(err)
	}
	l := append([]byte(nil), y[:8]...)
	r := append([]byte(nil), y[8:]...)
	l[7] ^= j
	r[7] ^= j ^ 0xF0
	out := make([]byte, 16)
	b.Encrypt(out[:8], l)
	b.Encrypt(out[8:], r)
	return out
}

// UnionPay: the definition recomputed with OpenSSL's two-key TDES ECB.
func TestUnionPaySessionKeyOpenSSL(t *testing.T) {
	t.Parallel()
	want := openssltest.Enc(t, "des-ede-ecb", issAC, unhex(t, "000000000000001C000000000000FFE3"))
	tdes.FixParity(want)
	got, err := UnionPaySessionKey(unhex(t, issAC), [2]byte{0x00, 0x1C})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%X, want %X (%v)", got, want, err)
	}
}

func TestPadding(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		m    Padding
		want string
	}{
		{"", PadMethod1, "0000000000000000"},
		{"01", PadMethod1, "0100000000000000"},
		{"0102030405060708", PadMethod1, "0102030405060708"},
		{"", PadMethod2, "8000000000000000"},
		{"0102030405060708", PadMethod2, "01020304050607088000000000000000"},
		{"01020304050607", PadMethod2, "0102030405060780"},
	} {
		if got := Pad(unhex(t, c.in), 8, c.m); !bytes.Equal(got, unhex(t, c.want)) {
			t.Errorf("Pad(%s, %d) = %X", c.in, c.m, got)
		}
	}
	// Guide, "Transaction data padding": the ISO 9797 method 1 example.
	in := unhex(t, "00000000170000000000000008400080008000084016051700000000093800000B03011203")
	if got := Pad(in, 8, PadMethod1); !bytes.Equal(got, unhex(t, "00000000170000000000000008400080008000084016051700000000093800000B03011203000000")) {
		t.Errorf("guide method 1 example: %X", got)
	}
}

func TestInputErrors(t *testing.T) {
	t.Parallel()
	imk := unhex(t, issAC)
	for _, c := range []struct{ pan, psn string }{{"1234x", "00"}, {"1234", "0"}, {"", "00"}, {"1234", "ab"}} {
		if _, err := ICCMasterKey(imk, OptionA, c.pan, c.psn); err == nil {
			t.Errorf("accepted %q/%q", c.pan, c.psn)
		}
	}
	if _, err := ICCMasterKey(imk[:8], OptionA, "1234", "00"); err == nil {
		t.Error("single-length IMK accepted")
	}
	if _, err := ICCMasterKey(imk, Option(9), "1234", "00"); err == nil {
		t.Error("unknown option accepted")
	}
	if _, err := MAC(imk, []byte{1, 2, 3}); err == nil {
		t.Error("unpadded MAC data accepted")
	}
	if _, err := ARPCMethod2(imk, [8]byte{}, [4]byte{}, make([]byte, 9)); err == nil {
		t.Error("9 bytes of proprietary data accepted")
	}
	for _, s := range []Scheme{0, 7} {
		if _, err := ACSessionKey(imk, s, [2]byte{}, [4]byte{}); err == nil {
			t.Errorf("scheme %d accepted", s)
		}
	}
}

func FuzzICCMasterKey(f *testing.F) {
	f.Add("12345678901234567", "01", 2)
	f.Add("000000000000000005", "23", 2)
	f.Fuzz(func(t *testing.T, pan, psn string, opt int) {
		mk, err := ICCMasterKey(unhex(t, issAC), Option(opt), pan, psn)
		if err == nil && (len(mk) != 16 || !tdes.CheckParity(mk)) {
			t.Fatalf("bad key for %q/%q", pan, psn)
		}
	})
}
