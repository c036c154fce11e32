package cardverify

import (
	"testing"

	"payhsm/hsm/emv"
)

// Known answers of the Visa dCVV from three independent public sources, each
// through the whole chain: issuer master key, ICC master key by EMV option A,
// then the dCVV.
func TestDCVVKnownAnswers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		src, imk, pan, psn, exp, sc, atc, want string
	}{
		// jpos/jPOS jpos/src/test/java/org/jpos/security/jceadapter/JCESecurityModuleTest.java
		// testVerifyDCVVImpl1 and testVerifyDCVVImpl2: MK-AC "4 times 12345678",
		// option A, no PAN sequence number (jPOS uses 00).
		{"jPOS 16-digit PAN", "12345678123456781234567812345678", "1234567890123456", "00", "1310", "226", "3210", "422"},
		{"jPOS 12-digit PAN", "12345678123456781234567812345678", "123456789012", "00", "1310", "226", "3210", "719"},
		// spochic/gep3 tests/dsc_test.py test_generate_dcvv (no service code:
		// the block is zero-filled, i.e. 000), with the UDK of
		// tests/key_management_test.py test_master_key_derivation_A.
		{"gep3", "01017391010101101320010101010101", "4012340000000016", "00", "1228", "000", "0001", "369"},
		// FelipeRodriguezFonte/CryptoCarver PaymentControlValuesTest
		// dcvvMatchesTheExternalToolCaptures: five captures of an external
		// payment tool, MDK 0123456789ABCDEF0123456789ABCDEF, PSN 00.
		{"CryptoCarver 1", "0123456789ABCDEF0123456789ABCDEF", "4111111111111111", "00", "1225", "001", "0001", "938"},
		{"CryptoCarver 2", "0123456789ABCDEF0123456789ABCDEF", "4111111111111111", "00", "1225", "001", "0002", "488"},
		{"CryptoCarver 3", "0123456789ABCDEF0123456789ABCDEF", "4111111111111111", "00", "1225", "001", "0010", "634"},
		{"CryptoCarver 4", "0123456789ABCDEF0123456789ABCDEF", "4111111111111111", "00", "1225", "101", "0010", "970"},
		{"CryptoCarver 5", "0123456789ABCDEF0123456789ABCDEF", "4111111111111111", "00", "1226", "101", "0010", "282"},
	} {
		icc, err := emv.ICCMasterKey(unhex(t, c.imk), emv.OptionA, c.pan, c.psn)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DCVV(icc, c.pan, c.exp, c.sc, [2]byte(unhex(t, c.atc)))
		if err != nil || got != c.want {
			t.Errorf("%s: dCVV %q, want %s (%v)", c.src, got, c.want, err)
		}
	}
}

// Four- and five-digit dCVVs (the AWS API's ValidationDataLength 4 and 5)
// continue the three-digit value's decimalisation. The expected values were
// computed independently with Python's cryptography package (TDES ECB) from
// the sources' keys and inputs above: ICC master key by option A, then the
// CVV algorithm's digits; their first three digits are the published values.
func TestDCVVLongerValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		src, imk, pan, exp, sc, atc string
		n                           int
		want                        string
	}{
		{"jPOS", "12345678123456781234567812345678", "1234567890123456", "1310", "226", "3210", 4, "4220"},
		{"jPOS", "12345678123456781234567812345678", "1234567890123456", "1310", "226", "3210", 5, "42202"},
		{"gep3", "01017391010101101320010101010101", "4012340000000016", "1228", "000", "0001", 4, "3691"},
		{"gep3", "01017391010101101320010101010101", "4012340000000016", "1228", "000", "0001", 5, "36917"},
	} {
		icc, err := emv.ICCMasterKey(unhex(t, c.imk), emv.OptionA, c.pan, "00")
		if err != nil {
			t.Fatal(err)
		}
		got, err := DCVVDigits(icc, c.pan, c.exp, c.sc, [2]byte(unhex(t, c.atc)), c.n)
		if err != nil || got != c.want {
			t.Errorf("%s: %d-digit dCVV %q, want %s (%v)", c.src, c.n, got, c.want, err)
		}
	}
	if _, err := DCVVDigits(make([]byte, 16), "1234567890123456", "1310", "226", [2]byte{}, 17); err == nil {
		t.Error("17 digits accepted")
	}
}

// spochic/gep3 tests/dsc_test.py test_generate_dcvv, second case: the UDK is
// given directly (from MDK 2315208C9110AD402315208C9110AD40, src/examples/evc_dcvv.py).
func TestDCVVFromGivenUDK(t *testing.T) {
	t.Parallel()
	got, err := DCVV(unhex(t, "1274FB0FCD3E27E088B741553037F089"), "4761739001010010", "1220", "000", [2]byte{0, 1})
	if err != nil || got != "802" {
		t.Fatalf("dCVV %q, want 802 (%v)", got, err)
	}
	icc, err := emv.ICCMasterKey(unhex(t, "2315208C9110AD402315208C9110AD40"), emv.OptionA, "4761739001010010", "00")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := DCVV(icc, "4761739001010010", "1220", "000", [2]byte{0, 1}); again != "802" {
		t.Fatalf("through option A: %q", again)
	}
}

func TestDCVVProperties(t *testing.T) {
	t.Parallel()
	icc := unhex(t, "1274FB0FCD3E27E088B741553037F089")
	pan, exp, sc, atc := "4761739001010010", "1220", "101", [2]byte{0x12, 0xAB}
	base, err := DCVV(icc, pan, exp, sc, atc)
	if err != nil || len(base) != 3 || !digits(base) {
		t.Fatalf("%q %v", base, err)
	}
	// The ATC's hexadecimal digits A-F enter the block as nibbles: the value
	// is the CVV algorithm over ATC ‖ PAN[4:] taken as a hex string.
	if v, _ := cvv(icc, "12AB"+pan[4:]+exp+sc, 3); v != base {
		t.Fatalf("dCVV %s is not the CVV over the alternate PAN (%s)", base, v)
	}
	// The first four PAN digits are replaced by the ATC, so they do not count.
	if v, _ := DCVV(icc, "9999"+pan[4:], exp, sc, atc); v != base {
		t.Errorf("leading PAN digits changed the value: %s vs %s", v, base)
	}
	// Count how often a change of one input leaves the 3-digit value unchanged:
	// over 256 ATCs a correct keyed function collides about 0.256 times.
	same := 0
	for i := 0; i < 256; i++ {
		if v, _ := DCVV(icc, pan, exp, sc, [2]byte{0x13, byte(i)}); v == base {
			same++
		}
	}
	if same > 3 {
		t.Errorf("%d of 256 other ATCs give the same dCVV", same)
	}
	for _, c := range []struct{ pan, exp, sc string }{
		{"4761739001010011", exp, sc}, {pan, "1221", sc}, {pan, exp, "102"},
	} {
		if v, _ := DCVV(icc, c.pan, c.exp, c.sc, atc); v == base {
			t.Logf("%v collides (1 in 1000)", c)
		}
	}
	for _, c := range []struct {
		key          []byte
		pan, exp, sc string
	}{
		{icc[:8], pan, exp, sc}, {icc, "4761", exp, sc}, {icc, "47617390010100101234", exp, sc}, {icc, "4761x39001010010", exp, sc},
		{icc, pan, "122", sc}, {icc, pan, "12a0", sc}, {icc, pan, exp, "10"}, {icc, pan, exp, "1o1"},
	} {
		if _, err := DCVV(c.key, c.pan, c.exp, c.sc, atc); err == nil {
			t.Errorf("accepted key %d bytes, %q %q %q", len(c.key), c.pan, c.exp, c.sc)
		}
	}
}

func FuzzDCVV(f *testing.F) {
	f.Add("4761739001010010", "1220", "000", byte(0), byte(1))
	icc := unhex(f, "1274FB0FCD3E27E088B741553037F089")
	f.Fuzz(func(t *testing.T, pan, exp, sc string, a0, a1 byte) {
		v, err := DCVV(icc, pan, exp, sc, [2]byte{a0, a1})
		if err == nil && (len(v) != 3 || !digits(v)) {
			t.Fatalf("bad value %q", v)
		}
	})
}
