package ceremony

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"payhsm/ceremony/custodian"
	"payhsm/hsm/custody"
	"payhsm/hsm/tr31"
	"payhsm/hsm/tr34"
	"payhsm/keystore"
)

// An appliance's device identity is an RSA-3072 key pair with a self-signed
// certificate, made on first use. Its private key is sealed under the region
// main key (never under a profile main key: it transports those). Operators
// compare certificate fingerprints on both consoles before a transfer, as
// with any HSM-to-HSM exchange without a shared PKI.
//
// Main-key synchronization is ANSI X9 TR-34 two-pass: the receiving appliance
// (KRD) issues its certificate and a one-time random nonce; the sending
// appliance (KDH) builds a TR-34 token carrying the profile main key,
// encrypted for the KRD's key and signed with its own; the KRD verifies the
// signature against the KDH certificate its operators confirmed, checks the
// nonce, opens the token and installs the key. Both print the same KCV.
//
// Strength note: RSA-3072 (128-bit security) and the token's AES-128 content
// encryption are weaker than the AES-256 main key they carry; TR-34 offers no
// stronger transport. Keep tokens under dual control and destroy them after use.

const (
	metaIdentity = "ceremony/identity"
	metaKRDNonce = "ceremony/krd-nonce"
)

var identityAAD = []byte("payhsm/ceremony/device-identity/v1")

type identityRecord struct {
	Cert   []byte `json:"cert"`
	Sealed []byte `json:"sealed"`
}

// identity returns the device certificate and private key, creating them on first use.
func identity(store *keystore.Store, cust *custody.Custodian) (*x509.Certificate, *rsa.PrivateKey, error) {
	raw, err := store.GetMeta(metaIdentity)
	if errors.Is(err, keystore.ErrNotFound) {
		key, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			return nil, nil, err
		}
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		tmpl := &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)),
			Subject:   pkix.Name{Organization: []string{"payhsm"}, CommonName: "payhsm appliance " + cust.RegionKeyKCV()},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, nil, err
		}
		p8, _ := x509.MarshalPKCS8PrivateKey(key)
		sealed, err := cust.Seal(p8, identityAAD)
		clear(p8)
		if err != nil {
			return nil, nil, err
		}
		raw, _ = json.Marshal(identityRecord{Cert: der, Sealed: sealed})
		if err := store.PutMetaIfAbsent(metaIdentity, raw); err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		return nil, nil, err
	}
	var rec identityRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, nil, fmt.Errorf("device identity record is corrupt: %w", err)
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return nil, nil, err
	}
	p8, err := cust.Unseal(rec.Sealed, identityAAD)
	if err != nil {
		return nil, nil, err
	}
	defer clear(p8)
	k, err := x509.ParsePKCS8PrivateKey(p8)
	if err != nil {
		return nil, nil, err
	}
	return cert, k.(*rsa.PrivateKey), nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var parts []string
	for i := 0; i < len(h); i += 4 {
		parts = append(parts, h[i:i+4])
	}
	return strings.Join(parts, " ")
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s is not a PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// krdRequest writes this appliance's certificate and a fresh one-time nonce
// (the KRD side's first pass).
func (s *session) krdRequest(certOut, nonceOut string) error {
	cert, _, err := identity(s.store, s.cust)
	if err != nil {
		return err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	if err := s.store.PutMeta(metaKRDNonce, nonce); err != nil {
		return err
	}
	if err := os.WriteFile(certOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(nonceOut, []byte(strings.ToUpper(hex.EncodeToString(nonce))+"\n"), 0o644); err != nil {
		return err
	}
	s.con.Printf("This appliance's certificate is in %s, fingerprint (SHA-256):\n  %s\nNonce written to %s (valid for one import).\n", certOut, fingerprint(cert), nonceOut)
	s.audit.Record(AuditEntry{Operation: "krd-request", Outcome: "ok", Detail: "certificate " + fingerprint(cert)})
	return nil
}

// approve runs dual control on this console.
func (s *session) approve(op, profile string) ([]string, error) {
	rec, err := custodian.Load(s.store, s.cust)
	if err != nil {
		return nil, err
	}
	apps, err := approvals(s.con)
	if err != nil {
		return nil, err
	}
	who, err := rec.DualControl(apps)
	if err != nil {
		return nil, s.refused(op, profile, nil, err)
	}
	return who, nil
}

func (s *session) confirmPeer(role string, c *x509.Certificate) error {
	s.con.Printf("%s certificate %q, fingerprint (SHA-256):\n  %s\n", role, c.Subject.CommonName, fingerprint(c))
	ok, err := s.con.Confirm("Does this fingerprint match the one shown on the other appliance's console?")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the peer certificate was not confirmed")
	}
	return nil
}

// exportMainKey builds a TR-34 token carrying profile's main key for the KRD
// certificate (sync to another appliance, or a backup for a specific HSM).
func (s *session) exportMainKey(profile, krdPath, nonceHex, out string) error {
	krd, err := readCert(krdPath)
	if err != nil {
		return err
	}
	nonce, err := hex.DecodeString(strings.TrimSpace(nonceHex))
	if err != nil || len(nonce) < 8 {
		return errors.New("--nonce: the KRD's nonce, hexadecimal")
	}
	who, err := s.approve("export-main-key", profile)
	if err != nil {
		return err
	}
	if err := s.confirmPeer("Receiving appliance (KRD)", krd); err != nil {
		return s.refused("export-main-key", profile, who, err)
	}
	kdh, kdhKey, err := identity(s.store, s.cust)
	if err != nil {
		return err
	}
	p, err := s.cust.Profile(profile)
	if err != nil {
		return err
	}
	key, err := s.cust.ExportProfileKey(profile)
	if err != nil {
		return err
	}
	defer clear(key)
	hdr, err := tr34.EncodeHeader(tr31.Header{Version: 'D', KeyUsage: "K1", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'})
	if err != nil {
		return err
	}
	tok, err := tr34.Build(tr34.BuildInput{Key: key, Header: hdr, Nonce: nonce, KDH: kdh, KDHKey: kdhKey, KRD: krd, UseAES: true})
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, tok, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(out+".kdh.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kdh.Raw}), 0o644); err != nil {
		return err
	}
	s.audit.Record(AuditEntry{Operation: "export-main-key", Profile: profile, Custodians: who, Outcome: "ok",
		KCVs: map[string]string{"profile": p.KCV()}, Detail: "TR-34 token for " + fingerprint(krd)})
	s.con.Printf("Profile %s main key (KCV %s) exported as a TR-34 token to %s, signed by this appliance (certificate %s.kdh.pem):\n  %s\n",
		profile, p.KCV(), out, out, fingerprint(kdh))
	return nil
}

// importMainKey verifies and opens a TR-34 token from the KDH and installs
// the main key as profile.
func (s *session) importMainKey(profile, kdhPath, tokenPath, wantKCV string) error {
	kdh, err := readCert(kdhPath)
	if err != nil {
		return err
	}
	der, err := os.ReadFile(tokenPath)
	if err != nil {
		return err
	}
	if _, err := s.cust.Profile(profile); err == nil {
		return fmt.Errorf("profile %q already has a main key; it is not overwritten", profile)
	}
	who, err := s.approve("import-main-key", profile)
	if err != nil {
		return err
	}
	if err := s.confirmPeer("Sending appliance (KDH)", kdh); err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	tok, err := tr34.Parse(der)
	if err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	pub, ok := kdh.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("the KDH certificate must hold an RSA key")
	}
	if err := tok.Verify(pub); err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	nonce, err := s.store.GetMeta(metaKRDNonce)
	if err != nil {
		return s.refused("import-main-key", profile, who, errors.New("no nonce is pending: run krd-request first"))
	}
	if string(nonce) != string(tok.Nonce) {
		return s.refused("import-main-key", profile, who, errors.New("the token does not carry this appliance's current nonce (replayed or for another request)"))
	}
	_, krdKey, err := identity(s.store, s.cust)
	if err != nil {
		return err
	}
	key, err := tok.Open(krdKey)
	if err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	defer clear(key)
	if got := componentKCV(key); wantKCV != "" && got != strings.ToUpper(wantKCV) {
		return s.refused("import-main-key", profile, who, fmt.Errorf("the transported key has KCV %s, expected %s: refused, nothing stored", got, wantKCV))
	}
	p, err := s.cust.InstallProfile(profile, key)
	if err != nil {
		return err
	}
	_ = s.store.PutMeta(metaKRDNonce, []byte{}) // one-time: an empty nonce matches no token
	s.audit.Record(AuditEntry{Operation: "import-main-key", Profile: profile, Custodians: who, Outcome: "ok",
		KCVs: map[string]string{"profile": p.KCV()}, Detail: "TR-34 token from " + fingerprint(kdh)})
	s.con.Printf("Profile %s main key imported from the TR-34 token, KCV %s\n", profile, p.KCV())
	return nil
}

// backupComponents splits profile's main key into n components for n
// different custodians: each sees only their own component (and its KCV),
// entered nowhere; restoring needs all of them (load-components).
func (s *session) backupComponents(profile string, n int) error {
	if n < 2 || n > 3 {
		return errors.New("--components: 2 or 3")
	}
	who, err := s.approve("backup-components", profile)
	if err != nil {
		return err
	}
	p, err := s.cust.Profile(profile)
	if err != nil {
		return err
	}
	key, err := s.cust.ExportProfileKey(profile)
	if err != nil {
		return err
	}
	defer clear(key)
	rec, err := custodian.Load(s.store, s.cust)
	if err != nil {
		return err
	}
	last := make([]byte, 32)
	copy(last, key)
	defer clear(last)
	kcvs := map[string]string{"profile": p.KCV()}
	var holders []string
	for i := 1; i <= n; i++ {
		holder, err := authenticate(s.con, rec, fmt.Sprintf("Component %d of %d holder", i, n), holders)
		if err != nil {
			return s.refused("backup-components", profile, append(who, holders...), err)
		}
		comp := make([]byte, 32)
		if i < n {
			if _, err := rand.Read(comp); err != nil {
				return err
			}
			for j := range last {
				last[j] ^= comp[j]
			}
		} else {
			copy(comp, last)
		}
		ck := componentKCV(comp)
		s.con.Printf("Custodian %s, component %d of %d (write it down, then clear the screen):\n  %s\n  KCV %s\n",
			holder, i, n, strings.ToUpper(hex.EncodeToString(comp)), ck)
		clear(comp)
		ok, err := s.con.Confirm("Recorded?")
		if err != nil || !ok {
			return s.refused("backup-components", profile, append(who, holders...), errors.New("a component was not recorded"))
		}
		s.con.Printf("\033[2J\033[H")
		holders = append(holders, holder)
		kcvs[fmt.Sprintf("component%d", i)] = ck
	}
	s.audit.Record(AuditEntry{Operation: "backup-components", Profile: profile, Custodians: append(who, holders...), Outcome: "ok", KCVs: kcvs})
	s.con.Printf("Profile %s main key (KCV %s) backed up as %d components.\n", profile, p.KCV(), n)
	return nil
}
