package keyspec

import (
	"crypto/aes"
	"crypto/des"
	"crypto/sha256"
	"crypto/sha512"
	"testing"
)

func TestAlgorithmFamilies(t *testing.T) {
	t.Parallel()
	for _, s := range modelAlgorithms {
		a := Algorithm(s)
		n := 0
		for _, f := range []bool{a.IsTDES(), a.IsAES(), a.IsHMAC(), a.IsRSA(), a.IsECC()} {
			if f {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s belongs to %d families", a, n)
		}
		if a.IsSymmetric() == a.IsAsymmetric() {
			t.Errorf("%s: IsSymmetric %v IsAsymmetric %v", a, a.IsSymmetric(), a.IsAsymmetric())
		}
	}
	if Algorithm("DES").IsSymmetric() || Algorithm("").IsAsymmetric() {
		t.Error("unknown algorithm classified")
	}
}

// Key lengths, sizes and strengths. Sources: FIPS 197 (AES key sizes), NIST SP
// 800-67 Rev. 2 (TDEA keying options: 2-key 112 effective bits, 3-key 168),
// FIPS 180-4 (hash output sizes), NIST SP 800-57 Part 1 Rev. 5 Table 2
// (comparable security strengths) and Table 3 (HMAC column).
func TestAlgorithmSizes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a                      Algorithm
		keyLen, bits, strength int
	}{
		{TDES2Key, 16, 112, 80},
		{TDES3Key, 24, 168, 112},
		{AES128, 16, 128, 128},
		{AES192, 24, 192, 192},
		{AES256, 32, 256, 256},
		{HMACSHA224, sha256.Size224, 224, 192},
		{HMACSHA256, sha256.Size, 256, 256},
		{HMACSHA384, sha512.Size384, 384, 256},
		{HMACSHA512, sha512.Size, 512, 256},
		{RSA2048, 0, 2048, 112},
		{RSA3072, 0, 3072, 128},
		{RSA4096, 0, 4096, 128},
		{ECCP256, 0, 256, 128},
		{ECCP384, 0, 384, 192},
		{ECCP521, 0, 521, 256},
		{"AES_512", 0, 0, 0},
		{"", 0, 0, 0},
	} {
		if got := c.a.KeyLen(); got != c.keyLen {
			t.Errorf("%q.KeyLen() = %d, want %d", c.a, got, c.keyLen)
		}
		if got := c.a.Bits(); got != c.bits {
			t.Errorf("%q.Bits() = %d, want %d", c.a, got, c.bits)
		}
		if got := Strength(c.a); got != c.strength {
			t.Errorf("Strength(%q) = %d, want %d", c.a, got, c.strength)
		}
	}
	// The clear key lengths are the ones the standard library's ciphers take.
	for _, a := range []Algorithm{AES128, AES192, AES256} {
		if _, err := aes.NewCipher(make([]byte, a.KeyLen())); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if _, err := des.NewTripleDESCipher(make([]byte, TDES3Key.KeyLen())); err != nil {
		t.Error(err)
	}
	if TDES2Key.KeyLen() != 2*des.BlockSize || TDES3Key.KeyLen() != 3*des.BlockSize {
		t.Error("TDES key lengths are not 2 and 3 DES keys")
	}
	for a, b := range map[Algorithm]int{HMACSHA224: sha256.BlockSize, HMACSHA256: sha256.BlockSize,
		HMACSHA384: sha512.BlockSize, HMACSHA512: sha512.BlockSize, AES128: 0} {
		if got := a.hmacBlockSize(); got != b {
			t.Errorf("%s.hmacBlockSize() = %d, want %d", a, got, b)
		}
	}
}

func TestKeyStrength(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a      Algorithm
		keyLen int
		want   int
	}{
		{HMACSHA256, 32, 256},
		{HMACSHA256, 16, 128},
		{HMACSHA512, 64, 256},
		{HMACSHA512, 128, 256},
		{HMACSHA224, 20, 160},
		{HMACSHA224, 28, 192},
		{AES128, 4, 128}, // fixed by the algorithm
		{RSA2048, 0, 112},
	} {
		if got := KeyStrength(c.a, c.keyLen); got != c.want {
			t.Errorf("KeyStrength(%s, %d) = %d, want %d", c.a, c.keyLen, got, c.want)
		}
	}
}

// The user guide's "Minimum key strengths and the effect on import and export
// functions" table: which wrapping keys may protect which keys. The TDES, AES
// and RSA columns are transcribed ('+' supported, 'x' "Not supp"); the ECC
// columns are left out because the ECDH path's strength is that of the derived
// key, not of the curve, and the table's extraction is ambiguous there.
func TestAtLeastAsStrongGuideTable(t *testing.T) {
	t.Parallel()
	cols := []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256, RSA2048, RSA3072, RSA4096}
	for _, r := range []struct {
		key   Algorithm
		cells string
	}{
		{TDES2Key, "++++++++"},
		{TDES3Key, "x+++++++"},
		{AES128, "xx+++x++"},
		{AES192, "xxx++xxx"},
		{AES256, "xxxx+xxx"},
	} {
		for i, w := range cols {
			want := r.cells[i] == '+'
			if got := AtLeastAsStrong(w, r.key); got != want {
				t.Errorf("AtLeastAsStrong(%s, %s) = %v, guide says %v", w, r.key, got, want)
			}
		}
	}
	if AtLeastAsStrong("", AES128) || AtLeastAsStrong(AES256, "AES_1024") {
		t.Error("unknown algorithms compared")
	}
	// The guide's certificate rule: "An ECC P384 certificate can only be issued by a P384 or P521 CA."
	for w, want := range map[Algorithm]bool{ECCP256: false, ECCP384: true, ECCP521: true} {
		if got := AtLeastAsStrong(w, ECCP384); got != want {
			t.Errorf("AtLeastAsStrong(%s, P384) = %v, want %v", w, got, want)
		}
	}
}

// Default KCV algorithms as the guide's examples show them (line numbers of
// /work/shared/seeds/003_c1b4d88e08786fa4.txt).
func TestDefaultKCVAlgorithm(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a    Algorithm
		want KCVAlgorithm
		src  string
	}{
		{TDES2Key, "ANSI_X9_24", "CVK example, line 924"},
		{TDES3Key, "ANSI_X9_24", "PEK example, line 1061"},
		{AES128, "CMAC", "TR-31 import example, line 2185"},
		{AES192, "CMAC", "model: AES keys use CMAC"},
		{AES256, "CMAC", "data key example, line 1015"},
		{HMACSHA512, "HMAC", "Creating an HMAC key, line 966"},
		{HMACSHA256, "HMAC", "SPA2 AAV key, line 6538"},
		{HMACSHA224, "HMAC", "model: HMAC keys use the key's hash"},
		{HMACSHA384, "HMAC", "model"},
		{RSA2048, "SHA_1", "S0 signing key, line 2948; D1 key line 1110 ('SHA-1')"},
		{RSA3072, "SHA_1", "as RSA_2048"},
		{RSA4096, "SHA_1", "as RSA_2048"},
		{ECCP256, "SHA_1", "K3 key, line 1204 ('SHA-1')"},
		{ECCP384, "SHA_1", "as P-256"},
		{ECCP521, "SHA_1", "as P-256"},
		{"nope", "", "unknown"},
	} {
		if got := DefaultKCVAlgorithm(c.a); got != c.want {
			t.Errorf("DefaultKCVAlgorithm(%s) = %q, want %q (%s)", c.a, got, c.want, c.src)
		}
		if c.want != "" {
			if err := ValidKCVAlgorithm(c.a, c.want); err != nil {
				t.Errorf("default %s for %s not valid: %v", c.want, c.a, err)
			}
		}
	}
}

func TestValidKCVAlgorithm(t *testing.T) {
	t.Parallel()
	allowed := map[string]map[KCVAlgorithm]bool{
		"TDES": {"ANSI_X9_24": true, "CMAC": true},
		"AES":  {"CMAC": true},
		"HMAC": {"HMAC": true},
		"RSA":  {"SHA_1": true},
		"ECC":  {"SHA_1": true},
	}
	family := func(a Algorithm) string {
		switch {
		case a.IsTDES():
			return "TDES"
		case a.IsAES():
			return "AES"
		case a.IsHMAC():
			return "HMAC"
		case a.IsRSA():
			return "RSA"
		}
		return "ECC"
	}
	for _, as := range modelAlgorithms {
		a := Algorithm(as)
		if err := ValidKCVAlgorithm(a, ""); err != nil {
			t.Errorf("ValidKCVAlgorithm(%s, \"\") = %v", a, err)
		}
		for _, ks := range append(modelKCVAlgorithms, "SHA-1", "cmac", "X9_24") {
			k := KCVAlgorithm(ks)
			err := ValidKCVAlgorithm(a, k)
			if want := allowed[family(a)][k]; (err == nil) != want {
				t.Errorf("ValidKCVAlgorithm(%s, %s) = %v, want accepted=%v", a, k, err, want)
			}
			if err != nil {
				checkValidationFault(t, err)
			}
		}
	}
	if err := ValidKCVAlgorithm("AES_1024", "CMAC"); err == nil {
		t.Error("unknown algorithm accepted")
	}
}
