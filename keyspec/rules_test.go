package keyspec

import (
	"strings"
	"testing"

	"payhsm/fault"
)

// Disallowed attribute sets, each with the field and the words of the rule the
// fault must name.
func TestValidateCreateRejects(t *testing.T) {
	t.Parallel()
	var (
		edwu = ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
		gv   = ModesOfUse{Generate: true, Verify: true}
		x    = ModesOfUse{DeriveKey: true}
	)
	for _, c := range []struct {
		name  string
		a     Attributes
		dku   KeyUsage
		field fault.Subject
		words string
	}{
		{"M1 with AES_128", Attributes{M1, Symmetric, AES128, gv}, "", fault.SubjectKeyAlgorithm, "AES_128 is not allowed for TR31_M1"},
		{"M3 with AES_256", Attributes{M3, Symmetric, AES256, gv}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"M0 with AES_128", Attributes{M0, Symmetric, AES128, gv}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"RSA for P0", Attributes{P0, Symmetric, RSA2048, edwu}, "", fault.SubjectKeyAlgorithm, "RSA_2048 is not allowed for TR31_P0"},
		{"HMAC on C0", Attributes{C0, Symmetric, HMACSHA256, gv}, "", fault.SubjectKeyAlgorithm, "HMAC_SHA256 is not allowed for TR31_C0"},
		{"HMAC on K1", Attributes{K1, Symmetric, HMACSHA512, edwu}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"M7 with TDES (guide table, not examples)", Attributes{M7, Symmetric, TDES2Key, gv}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"M7 with AES", Attributes{M7, Symmetric, AES256, gv}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"ECC for D1", Attributes{D1, AsymmetricPair, ECCP256, edwu}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"RSA for K3", Attributes{K3, AsymmetricPair, RSA2048, x}, K1, fault.SubjectKeyAlgorithm, "not allowed"},
		{"ECC for S0 on create", Attributes{S0, AsymmetricPair, ECCP256, ModesOfUse{Sign: true}}, "", fault.SubjectKeyAlgorithm, "not allowed"},
		{"P0 with Generate", Attributes{P0, Symmetric, TDES2Key, ModesOfUse{Generate: true}}, "", fault.SubjectKeyModesOfUse, "{Generate} is not an allowed combination for TR31_P0"},
		{"C0 with Encrypt", Attributes{C0, Symmetric, TDES2Key, ModesOfUse{Encrypt: true}}, "", fault.SubjectKeyModesOfUse, "{Encrypt} is not an allowed combination"},
		{"mixed Encrypt+Generate", Attributes{D0, Symmetric, AES128, ModesOfUse{Encrypt: true, Generate: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"Encrypt without Wrap", Attributes{K0, Symmetric, AES128, ModesOfUse{Encrypt: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"Encrypt+Unwrap", Attributes{P0, Symmetric, TDES2Key, ModesOfUse{Encrypt: true, Unwrap: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"NoRestrictions with Generate", Attributes{C0, Symmetric, TDES2Key, ModesOfUse{Generate: true, NoRestrictions: true}}, "", fault.SubjectKeyModesOfUse, "NoRestrictions cannot be combined"},
		{"NoRestrictions with DeriveKey", Attributes{B0, Symmetric, AES128, ModesOfUse{DeriveKey: true, NoRestrictions: true}}, "", fault.SubjectKeyModesOfUse, "NoRestrictions cannot be combined"},
		{"no modes", Attributes{D0, Symmetric, AES128, ModesOfUse{}}, "", fault.SubjectKeyModesOfUse, "at least one"},
		{"NoRestrictions on D1", Attributes{D1, AsymmetricPair, RSA2048, ModesOfUse{NoRestrictions: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"K2 with DeriveKey (guide's stray line)", Attributes{K2, AsymmetricPair, RSA2048, x}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"S0 Sign+Verify", Attributes{S0, AsymmetricPair, RSA2048, ModesOfUse{Sign: true, Verify: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"B0 with Generate", Attributes{B0, Symmetric, TDES2Key, ModesOfUse{Generate: true}}, "", fault.SubjectKeyModesOfUse, "not an allowed combination"},
		{"symmetric usage as key pair", Attributes{P0, AsymmetricPair, AES128, edwu}, "", fault.SubjectKeyClass, "created with KeyClass SYMMETRIC_KEY"},
		{"symmetric usage as public key", Attributes{K1, PublicKey, AES128, edwu}, "", fault.SubjectKeyClass, "SYMMETRIC_KEY"},
		{"D1 as symmetric", Attributes{D1, Symmetric, RSA2048, edwu}, "", fault.SubjectKeyClass, "created with KeyClass ASYMMETRIC_KEY_PAIR"},
		{"S0 as public key on create", Attributes{S0, PublicKey, RSA2048, ModesOfUse{Verify: true}}, "", fault.SubjectKeyClass, "ASYMMETRIC_KEY_PAIR"},
		{"K3 as private key", Attributes{K3, PrivateKey, ECCP256, x}, K1, fault.SubjectKeyClass, "ASYMMETRIC_KEY_PAIR"},
		{"DeriveKeyUsage on B0", Attributes{B0, Symmetric, AES128, x}, K1, fault.SubjectDeriveKeyUsage, "only allowed for TR31_K3"},
		{"DeriveKeyUsage on D1", Attributes{D1, AsymmetricPair, RSA2048, edwu}, P0, fault.SubjectDeriveKeyUsage, "only allowed"},
		{"K3 deriving K3", Attributes{K3, AsymmetricPair, ECCP256, x}, K3, fault.SubjectDeriveKeyUsage, "cannot be derived"},
		{"K3 deriving S0", Attributes{K3, AsymmetricPair, ECCP384, x}, S0, fault.SubjectDeriveKeyUsage, "cannot be derived"},
		{"K3 deriving M0 (not in the model's DeriveKeyUsage)", Attributes{K3, AsymmetricPair, ECCP521, x}, M0, fault.SubjectDeriveKeyUsage, "cannot be derived"},
		{"K3 deriving unknown", Attributes{K3, AsymmetricPair, ECCP256, x}, "TR31_K9_NOPE", fault.SubjectDeriveKeyUsage, "cannot be derived"},
		{"unknown usage", Attributes{"TR31_Z9_BOGUS", Symmetric, AES128, edwu}, "", fault.SubjectKeyUsage, "unknown key usage"},
		{"lower-case usage", Attributes{"tr31_p0_pin_encryption_key", Symmetric, AES128, edwu}, "", fault.SubjectKeyUsage, "unknown key usage"},
		{"empty usage", Attributes{"", Symmetric, AES128, edwu}, "", fault.SubjectKeyUsage, "unknown key usage"},
		{"unknown class", Attributes{P0, "SECRET", AES128, edwu}, "", fault.SubjectKeyClass, "unknown key class"},
		{"unknown algorithm", Attributes{P0, Symmetric, "AES_512", edwu}, "", fault.SubjectKeyAlgorithm, "unknown key algorithm"},
		{"DES algorithm", Attributes{P0, Symmetric, "DES", edwu}, "", fault.SubjectKeyAlgorithm, "unknown key algorithm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateCreate(c.a, c.dku)
			if err == nil {
				t.Fatalf("ValidateCreate(%+v, %q) accepted", c.a, c.dku)
			}
			f := validationFault(t, err)
			if f.Subject != c.field || !strings.Contains(f.Message, c.words) {
				t.Fatalf("fault subject %d message %q; want subject %d and %q", f.Subject, f.Message, c.field, c.words)
			}
		})
	}
}

func TestValidateImportCases(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		a     Attributes
		dku   KeyUsage
		field fault.Subject // SubjectNone = accepted
	}{
		// Guide examples of imports.
		{"root CA RSA_4096 (Step 5: Import CA Certificate)", Attributes{S0, PublicKey, RSA4096, mV}, "", fault.SubjectNone},
		{"ECC root CA for ECDH", Attributes{S0, PublicKey, ECCP384, mV}, "", fault.SubjectNone},
		{"D1 public key for encryption", Attributes{D1, PublicKey, RSA2048, mEW}, "", fault.SubjectNone},
		{"K2 KRD certificate", Attributes{K2, PublicKey, RSA3072, mEW}, "", fault.SubjectNone},
		{"K3 leaf certificate", Attributes{K3, PublicKey, ECCP256, mX}, "", fault.SubjectNone},
		{"K3 leaf with DeriveKeyUsage", Attributes{K3, PublicKey, ECCP256, mX}, K1, fault.SubjectNone},
		{"TR-31 D0TN (decrypt-data example)", Attributes{D0, Symmetric, TDES2Key, mN}, "", fault.SubjectNone},
		{"TR-31 K1TB (ECDH import example)", Attributes{K1, Symmetric, TDES3Key, mEDWU}, "", fault.SubjectNone},
		{"TR-31 P0TB", Attributes{P0, Symmetric, TDES2Key, mEDWU}, "", fault.SubjectNone},
		{"TR-31 B0AX", Attributes{B0, Symmetric, AES128, mX}, "", fault.SubjectNone},
		{"imported HMAC", Attributes{M7, Symmetric, HMACSHA384, mV}, "", fault.SubjectNone},
		{"imported P1", Attributes{P1, Symmetric, TDES3Key, mGV}, "", fault.SubjectNone},
		// Rejections.
		{"D1 public key with full modes", Attributes{D1, PublicKey, RSA2048, mEDWU}, "", fault.SubjectKeyModesOfUse},
		{"D1 public key decrypt", Attributes{D1, PublicKey, RSA2048, mDU}, "", fault.SubjectKeyModesOfUse},
		{"S0 public key signing", Attributes{S0, PublicKey, RSA2048, mS}, "", fault.SubjectKeyModesOfUse},
		{"K2 public key verify", Attributes{K2, PublicKey, RSA2048, mV}, "", fault.SubjectKeyModesOfUse},
		{"ECC D1 public key", Attributes{D1, PublicKey, ECCP256, mEW}, "", fault.SubjectKeyAlgorithm},
		{"RSA K3 public key", Attributes{K3, PublicKey, RSA2048, mX}, "", fault.SubjectKeyAlgorithm},
		{"key pair import", Attributes{D1, AsymmetricPair, RSA2048, mEDWU}, "", fault.SubjectKeyClass},
		{"private key import", Attributes{S0, PrivateKey, RSA2048, mS}, "", fault.SubjectKeyClass},
		{"symmetric as public key", Attributes{P0, PublicKey, AES128, mEDWU}, "", fault.SubjectKeyClass},
		{"M7 with TDES", Attributes{M7, Symmetric, TDES2Key, mGV}, "", fault.SubjectKeyAlgorithm},
		{"P0 with Generate", Attributes{P0, Symmetric, TDES2Key, mG}, "", fault.SubjectKeyModesOfUse},
		{"DeriveKeyUsage on S0", Attributes{S0, PublicKey, RSA2048, mV}, K1, fault.SubjectDeriveKeyUsage},
		{"DeriveKeyUsage on symmetric", Attributes{K1, Symmetric, AES256, mEDWU}, K1, fault.SubjectDeriveKeyUsage},
		{"K3 with bad DeriveKeyUsage", Attributes{K3, PublicKey, ECCP256, mX}, D1, fault.SubjectDeriveKeyUsage},
		{"unknown usage", Attributes{"TR31_B1_IPEK", Symmetric, TDES2Key, mX}, "", fault.SubjectKeyUsage},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateImport(c.a, c.dku)
			if c.field == fault.SubjectNone {
				if err != nil {
					t.Fatalf("ValidateImport(%+v, %q) = %v", c.a, c.dku, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateImport(%+v, %q) accepted", c.a, c.dku)
			}
			if f := validationFault(t, err); f.Subject != c.field {
				t.Fatalf("fault subject %d (%s), want %d", f.Subject, f.Message, c.field)
			}
		})
	}
}

// K3 keys take every member of the model's DeriveKeyUsage enum, and nothing
// else; none at all is accepted too, as the guide's "Creating an asymmetric
// ECC key" example creates one (the key then derives DefaultDeriveKeyUsage
// keys, the value the guide's ECDH flows use).
func TestDeriveKeyUsage(t *testing.T) {
	t.Parallel()
	a := Attributes{K3, AsymmetricPair, ECCP256, ModesOfUse{DeriveKey: true}}
	if err := ValidateCreate(a, ""); err != nil {
		t.Errorf("ValidateCreate(K3 without DeriveKeyUsage) = %v", err)
	}
	if DefaultDeriveKeyUsage != K1 {
		t.Errorf("DefaultDeriveKeyUsage = %s, want %s (the guide's ECDH key exchange value)", DefaultDeriveKeyUsage, K1)
	}
	derivable := map[string]bool{}
	for _, s := range modelDeriveKeyUsages {
		derivable[s] = true
		if err := ValidateCreate(a, KeyUsage(s)); err != nil {
			t.Errorf("ValidateCreate(K3, %s) = %v", s, err)
		}
	}
	for _, s := range modelUsages {
		if derivable[s] {
			continue
		}
		if err := ValidateCreate(a, KeyUsage(s)); err == nil {
			t.Errorf("ValidateCreate(K3, %s) accepted", s)
		}
	}
}

// Rows of the guide's "Valid keys for cryptographic operations" tables: every
// key an operation accepts must be creatable. Two rows are left out: the
// IBM3624_PIN_OFFSET PEK's "{ Encrypt = true, Unwrap = true }" (not a
// combination the key-attribute table allows; read as a typo for Encrypt+Wrap)
// and the M7 row's TDES/AES algorithms (see rules.go).
func TestOperationsTablesCreatable(t *testing.T) {
	t.Parallel()
	var (
		g   = ModesOfUse{Generate: true}
		v   = ModesOfUse{Verify: true}
		gv  = ModesOfUse{Generate: true, Verify: true}
		x   = ModesOfUse{DeriveKey: true}
		n   = ModesOfUse{NoRestrictions: true}
		ew  = ModesOfUse{Encrypt: true, Wrap: true}
		du  = ModesOfUse{Decrypt: true, Unwrap: true}
		all = ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	)
	rows := []struct {
		op    string
		usage KeyUsage
		algs  []Algorithm
		modes []ModesOfUse
	}{
		{"GenerateCardData AMEX CSC", C0, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{g, gv}},
		{"GenerateCardData CVV", C0, []Algorithm{TDES2Key}, []ModesOfUse{g, gv}},
		{"GenerateCardData CAVV/dCVV", E6, []Algorithm{TDES2Key}, []ModesOfUse{x}},
		{"GenerateCardData DCVC", E4, []Algorithm{TDES2Key}, []ModesOfUse{x}},
		{"GeneratePinData PEK", P0, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{ew, all, n}},
		{"GeneratePinData VISA PVK", V2, []Algorithm{TDES3Key}, []ModesOfUse{g, gv}},
		{"GeneratePinData IBM3624 PVK", V1, []Algorithm{TDES3Key}, []ModesOfUse{g, gv}},
		{"VerifyPinData PEK", P0, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{du, all, n}},
		{"VerifyPinData VISA PVK", V2, []Algorithm{TDES3Key}, []ModesOfUse{v, gv}},
		{"Decrypt DUKPT", B0, []Algorithm{TDES2Key, AES128, AES192, AES256}, []ModesOfUse{x, n}},
		{"Decrypt EMV", E1, []Algorithm{TDES2Key}, []ModesOfUse{x}},
		{"Decrypt RSA", D1, []Algorithm{RSA2048, RSA3072, RSA4096}, []ModesOfUse{du, all}},
		{"Decrypt symmetric", D0, []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}, []ModesOfUse{du, all, n}},
		{"Encrypt RSA", D1, []Algorithm{RSA2048, RSA3072, RSA4096}, []ModesOfUse{ew, all}},
		{"Translate PIN PEK", P0, []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}, []ModesOfUse{du, ew, all, n}},
		{"MAC ISO 9797-1", M1, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{g, gv, v}},
		{"MAC retail", M3, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{g, gv, v}},
		{"MAC CMAC", M6, []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}, []ModesOfUse{g, gv, v}},
		{"MAC AS2805", M0, []Algorithm{TDES2Key, TDES3Key}, []ModesOfUse{g, gv, v}},
		{"MAC HMAC (examples)", M7, []Algorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}, []ModesOfUse{g, gv, v}},
		{"EMV PIN change integrity", E2, []Algorithm{TDES2Key}, []ModesOfUse{n}},
		{"ARQC", E0, []Algorithm{TDES2Key}, []ModesOfUse{x}},
		{"TR-31 wrapping key", K1, []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}, []ModesOfUse{ew, du, all}},
		{"TR-31 wrapping key K0", K0, []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}, []ModesOfUse{ew, du, all}},
	}
	for _, r := range rows {
		for _, alg := range r.algs {
			for _, m := range r.modes {
				a := Attributes{Usage: r.usage, Class: Symmetric, Algorithm: alg, Modes: m}
				if r.usage.IsAsymmetric() {
					a.Class = AsymmetricPair
				}
				if err := ValidateCreate(a, ""); err != nil {
					t.Errorf("%s: ValidateCreate(%+v) = %v", r.op, a, err)
				}
				if !SupportedForOperations(a) {
					t.Errorf("%s: %+v used by an operation but SupportedForOperations is false", r.op, a)
				}
			}
		}
	}
}

func TestModesString(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		m    ModesOfUse
		want string
	}{
		{ModesOfUse{}, "{}"},
		{ModesOfUse{Encrypt: true, Wrap: true}, "{Encrypt, Wrap}"},
		{ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true, Generate: true, Sign: true, Verify: true, DeriveKey: true, NoRestrictions: true},
			"{Encrypt, Decrypt, Wrap, Unwrap, Generate, Sign, Verify, DeriveKey, NoRestrictions}"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

func TestUsageSymmetry(t *testing.T) {
	t.Parallel()
	asym := map[KeyUsage]bool{D1: true, K2: true, K3: true, S0: true}
	for _, s := range modelUsages {
		u := KeyUsage(s)
		if u.IsAsymmetric() != asym[u] || u.IsSymmetric() == asym[u] {
			t.Errorf("%s: IsSymmetric %v IsAsymmetric %v", u, u.IsSymmetric(), u.IsAsymmetric())
		}
	}
	if KeyUsage("nope").IsSymmetric() || KeyUsage("nope").IsAsymmetric() {
		t.Error("unknown usage classified")
	}
}
