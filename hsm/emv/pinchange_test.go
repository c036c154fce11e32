package emv

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"payhsm/hsm/tdes"

	"payhsm/internal/openssltest"
)

// Issuer master keys of knovichikhin/pyemv tests/test_sm_hsm.py (KCVs
// D2B91C, 08D7B4 and 7B8358 checked in TestPinChangePyemvHSM).
const (
	pcSMC = "11111111111111112222222222222222"
	pcSMI = "0123456789ABCDEFFEDCBA9876543210"
	pcAC  = "FEDCBA98765432100123456789ABCDEF"
)

// kcv3 is pyemv's tools.key_check_digits(key, 3).
func kcv3(t testing.TB, key []byte) string {
	t.Helper()
	b, err := tdes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	b.Encrypt(out, make([]byte, 8))
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

// Source: knovichikhin/pyemv tests/test_sm_hsm.py (vectors produced with a
// payment HSM): test_mastercard_pin_change, test_mastercard_pin_change_12,
// test_vis_pin_change, test_vis_change_change_current_pin,
// test_vis_change_current_pin_12 and test_ccd_pin_change. Option A master
// keys for PAN 1234567890123456 PSN 01; common session keys with R = the
// cryptogram ABCDEF1234567890, or Visa SM session keys with ATC FFFF.
func TestPinChangePyemvHSM(t *testing.T) {
	t.Parallel()
	const pan, psn = "1234567890123456", "01"
	for name, kcv := range map[string]string{pcSMC: "D2B91C", pcSMI: "08D7B4", pcAC: "7B8358"} {
		if got := kcv3(t, unhex(t, name)); got != kcv {
			t.Fatalf("issuer key KCV %s, want %s", got, kcv)
		}
	}
	for _, c := range []struct {
		name          string
		scheme        Scheme
		pin, current  string
		block         string
		layout        PINDataLayout
		mode          CipherMode
		smcKCV        string
		smiKCV        string
		enc           string
		header, mac   string
		visaPINBlock  bool
		iccACKCV      string
		iccSMCKCV     string
		iccSMIKCV     string
		sessionR, atc string
	}{
		{name: "mastercard", scheme: SchemeMastercard, pin: "9999", block: "249999FFFFFFFFFF", layout: LayoutMastercard, mode: CBC,
			smcKCV: "D694B8", smiKCV: "F088F8", enc: "28367E05DE3381C2", header: "8424000210", mac: "8C4D10091A093B5B"},
		{name: "mastercard 12", scheme: SchemeMastercard, pin: "999999999999", block: "2C999999999999FF", layout: LayoutMastercard, mode: CBC,
			smcKCV: "D694B8", smiKCV: "F088F8", enc: "99AD3AF9EB3ECF0C", header: "8424000210", mac: "1471D88C6393BE21"},
		{name: "ccd", scheme: SchemeEMVCommon, pin: "9999", block: "249999FFFFFFFFFF", layout: LayoutCCD, mode: CBC,
			smcKCV: "D694B8", smiKCV: "F088F8", enc: "28367E05DE3381C29D30A6055A8DEB86", header: "8424000210", mac: "69DA1EE208823022"},
		{name: "vis", scheme: SchemeVisa, pin: "9999", block: "049999FFC4B001F1", layout: LayoutVisa, mode: ECB, visaPINBlock: true,
			smcKCV: "BD7C46", smiKCV: "A41D47", enc: "D421231A6FD2F0FAEE671384F0D3A7B9", header: "8424000210", mac: "F67E37E67B06AB99"},
		{name: "vis current", scheme: SchemeVisa, pin: "9999", current: "8888", block: "8C1199FFC4B001F1", layout: LayoutVisa, mode: ECB, visaPINBlock: true,
			smcKCV: "BD7C46", smiKCV: "A41D47", enc: "C29371CC36BA70C1EE671384F0D3A7B9", header: "8424000110", mac: "6AB3AD15D8B0621A"},
		{name: "vis current 12", scheme: SchemeVisa, pin: "999999999999", current: "888888888888", block: "841111112A5E67F1", layout: LayoutVisa, mode: ECB, visaPINBlock: true,
			smcKCV: "BD7C46", smiKCV: "A41D47", enc: "622066A74F1E974AEE671384F0D3A7B9", header: "8424000110", mac: "829AC5DE4B88074D"},
	} {
		t.Run(c.name, func(t *testing.T) {
			icc := func(iss string) []byte {
				mk, err := ICCMasterKey(unhex(t, iss), OptionA, pan, psn)
				if err != nil {
					t.Fatal(err)
				}
				return mk
			}
			mkSMC, mkSMI, mkAC := icc(pcSMC), icc(pcSMI), icc(pcAC)
			if kcv3(t, mkSMC) != "6B0F76" || kcv3(t, mkSMI) != "02396B" || kcv3(t, mkAC) != "C5CACD" {
				t.Fatalf("ICC KCVs %s %s %s", kcv3(t, mkSMC), kcv3(t, mkSMI), kcv3(t, mkAC))
			}
			ac := [8]byte(unhex(t, "ABCDEF1234567890"))
			atc := [2]byte{0xFF, 0xFF}
			skSMC, err := SMSessionKey(mkSMC, c.scheme, ac, atc)
			if err != nil {
				t.Fatal(err)
			}
			skSMI, err := SMSessionKey(mkSMI, c.scheme, ac, atc)
			if err != nil {
				t.Fatal(err)
			}
			if kcv3(t, skSMC) != c.smcKCV || kcv3(t, skSMI) != c.smiKCV {
				t.Fatalf("SK KCVs %s %s, want %s %s", kcv3(t, skSMC), kcv3(t, skSMI), c.smcKCV, c.smiKCV)
			}
			var blk []byte
			if c.visaPINBlock {
				var cur []byte
				if c.current != "" {
					cur = []byte(c.current)
				}
				blk, err = VisaPINBlock(mkAC, []byte(c.pin), cur)
			} else {
				blk, err = ISO2PINBlock([]byte(c.pin))
			}
			if err != nil || !bytes.Equal(blk, unhex(t, c.block)) {
				t.Fatalf("PIN block %X, want %s (%v)", blk, c.block, err)
			}
			enc, err := EncipherPINData(skSMC, blk, c.layout, c.mode)
			if err != nil || !bytes.Equal(enc, unhex(t, c.enc)) {
				t.Fatalf("enciphered %X, want %s (%v)", enc, c.enc, err)
			}
			mac, err := ScriptMAC(skSMI, append(unhex(t, c.header), enc...))
			if err != nil || !bytes.Equal(mac, unhex(t, c.mac)) {
				t.Fatalf("MAC %X, want %s (%v)", mac, c.mac, err)
			}
		})
	}
}

// Source: knovichikhin/pyemv pyemv/sm.py docstring examples of
// encrypt_command_data (MASTERCARD), format_vis_pin_block,
// format_iso9564_2_pin_block and generate_command_mac.
func TestPinChangePyemvDocExamples(t *testing.T) {
	t.Parallel()
	key := unhex(t, "0123456789ABCDEFFEDCBA9876543210")
	enc, err := EncipherPINData(key, unhex(t, "241234FFFFFFFFFF"), LayoutMastercard, CBC)
	if err != nil || !bytes.Equal(enc, unhex(t, "9859240AE52820C3")) {
		t.Errorf("encrypt_command_data %X (%v)", enc, err)
	}
	vb, err := VisaPINBlock(key, []byte("1234"), nil)
	if err != nil || !bytes.Equal(vb, unhex(t, "041234FF76543210")) {
		t.Errorf("format_vis_pin_block %X (%v)", vb, err)
	}
	ib, err := ISO2PINBlock([]byte("123456789012"))
	if err != nil || !bytes.Equal(ib, unhex(t, "2C123456789012FF")) {
		t.Errorf("format_iso9564_2_pin_block %X (%v)", ib, err)
	}
	mac, err := ScriptMAC(key, unhex(t, "8424000008"+"FFFF"+"1234567890123456"))
	if err != nil || !bytes.Equal(mac, unhex(t, "E07B8DF1B4184282")) {
		t.Errorf("generate_command_mac %X (%v)", mac, err)
	}
}

// Cross-check of the two cipher modes against OpenSSL's two-key TDES.
func TestEncipherPINDataOpenSSL(t *testing.T) {
	t.Parallel()
	key := "89ABCDEF0123456776543210FEDCBA98"
	blk := unhex(t, "26123456FFFFFFFF")
	for _, c := range []struct {
		m    CipherMode
		ossl string
		args []string
	}{{ECB, "des-ede-ecb", nil}, {CBC, "des-ede-cbc", []string{"-iv", "0000000000000000"}}} {
		// The CCD layout: block || 80 00 .. 00.
		plain := hex.EncodeToString(blk) + "8000000000000000"
		want := hex.EncodeToString(openssltest.Enc(t, c.ossl, key, unhex(t, plain), c.args...))
		got, err := EncipherPINData(unhex(t, key), blk, LayoutCCD, c.m)
		if err != nil || hex.EncodeToString(got) != want {
			t.Errorf("mode %d: %x, openssl %s (%v)", c.m, got, want, err)
		}
	}
}

func TestPinChangeInputErrors(t *testing.T) {
	t.Parallel()
	key := unhex(t, pcSMI)
	for _, pin := range []string{"", "123", "1234567890123", "12a4"} {
		if _, err := ISO2PINBlock([]byte(pin)); err == nil {
			t.Errorf("ISO2PINBlock accepted %q", pin)
		}
		if _, err := VisaPINBlock(key, []byte(pin), nil); err == nil {
			t.Errorf("VisaPINBlock accepted %q", pin)
		}
		if _, err := VisaPINBlock(key, []byte("1234"), []byte(pin)); err == nil {
			t.Errorf("VisaPINBlock accepted current PIN %q", pin)
		}
	}
	if _, err := VisaPINBlock(key[:8], []byte("1234"), nil); err == nil {
		t.Error("single-length MK-AC accepted")
	}
	blk := unhex(t, "241234FFFFFFFFFF")
	if _, err := EncipherPINData(key, blk, PINDataLayout{LengthPrefix: true}, CBC); err == nil {
		t.Error("length prefix without padding accepted")
	}
	if _, err := EncipherPINData(key, blk, LayoutCCD, CipherMode(9)); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := EncipherPINData(key[:8], blk, LayoutCCD, ECB); err == nil {
		t.Error("single-length key accepted")
	}
	if _, err := EncipherPINData(key, blk[:7], LayoutCCD, ECB); err == nil {
		t.Error("short PIN block accepted")
	}
}

// Every PIN of every length round-trips through the ISO 2 layout.
func FuzzISO2PINBlock(f *testing.F) {
	f.Add("1234")
	f.Add("999999999999")
	f.Fuzz(func(t *testing.T, pin string) {
		b, err := ISO2PINBlock([]byte(pin))
		if err != nil {
			return
		}
		s := strings.ToUpper(hex.EncodeToString(b))
		if s[0] != '2' || int(b[0]&0x0F) != len(pin) || s[2:2+len(pin)] != pin || strings.Trim(s[2+len(pin):], "F") != "" {
			t.Fatalf("bad block %s", s)
		}
	})
}
