// Package mainkey owns the transport of profile main keys between appliances
// with ANSI X9 TR-34 two-pass: each appliance's device identity (an RSA-3072
// key pair with a self-signed certificate, its private key sealed under the
// region main key — never under a profile main key, which it transports), the
// receiving side's one-time nonce, building a token as the sender (KDH) and
// verifying, opening and installing one as the receiver (KRD). Operators
// compare certificate fingerprints on both sides; callers (the offline
// ceremony tool and the daemon's admin socket) add dual control and audit.
//
// Strength note: RSA-3072 (128-bit security) and the token's AES-128 content
// encryption are weaker than the AES-256 main key they carry; TR-34 offers no
// stronger transport. Tokens are kept under dual control and destroyed after use.
package mainkey

import (
	"crypto/aes"
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
	"strings"
	"time"

	"payhsm/hsm/custody"
	"payhsm/hsm/kcv"
	"payhsm/hsm/tr31"
	"payhsm/hsm/tr34"
	"payhsm/keystore"
)

const (
	metaIdentity = "ceremony/identity"
	metaKRDNonce = "ceremony/krd-nonce"
)

var identityAAD = []byte("payhsm/ceremony/device-identity/v1")

type identityRecord struct {
	Cert   []byte `json:"cert"`
	Sealed []byte `json:"sealed"`
}

// Identity returns the appliance's device certificate and private key, creating them on first use.
func Identity(store *keystore.Store, cust *custody.Custodian) (*x509.Certificate, *rsa.PrivateKey, error) {
	raw, err := store.GetMeta(cust.MetaName(metaIdentity))
	if errors.Is(err, keystore.ErrNotFound) {
		key, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			return nil, nil, err
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)),
			Subject:   pkix.Name{Organization: []string{"payhsm"}, CommonName: identityName(cust)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, nil, err
		}
		p8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		sealed, err := cust.Seal(p8, identityAAD)
		clear(p8)
		if err != nil {
			return nil, nil, err
		}
		if raw, err = json.Marshal(identityRecord{Cert: der, Sealed: sealed}); err != nil {
			return nil, nil, err
		}
		if err := store.PutMetaIfAbsent(cust.MetaName(metaIdentity), raw); err != nil {
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
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("device identity record holds no RSA key")
	}
	// The certificate is stored in the clear beside the sealed key: one
	// swapped in the data directory would have a peer send a main key to
	// someone else's key (and both consoles would show its fingerprint).
	if !rk.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("device identity record: the certificate does not match the sealed private key (the record was altered)")
	}
	return cert, rk, nil
}

// identityName is the device certificate's common name: the region main
// key's check value, and the node's name in a fleet.
func identityName(cust *custody.Custodian) string {
	if n := cust.Node(); n != "" {
		return "payhsm node " + n + " " + cust.RegionKeyKCV()
	}
	return "payhsm appliance " + cust.RegionKeyKCV()
}

// Fingerprint is a certificate's SHA-256 fingerprint in groups of four hex digits.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var parts []string
	for i := 0; i < len(h); i += 4 {
		parts = append(parts, h[i:i+4])
	}
	return strings.Join(parts, " ")
}

// CertPEM encodes a certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCertPEM decodes one PEM certificate.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// KRDRequest is the receiving side's first pass: its certificate and a fresh
// one-time nonce, which replaces any pending one.
func KRDRequest(store *keystore.Store, cust *custody.Custodian) (*x509.Certificate, []byte, error) {
	cert, _, err := Identity(store, cust)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	if err := store.PutMeta(cust.MetaName(metaKRDNonce), nonce); err != nil {
		return nil, nil, err
	}
	return cert, nonce, nil
}

// KRDRequestOnline is KRDRequest for the online sync (payhsm ceremony sync
// and join): the nonce is returned but not stored; the daemon keeps it in
// memory until ImportWithNonce uses it. Nothing is written but, on first
// use, the device identity, so that a fleet node whose copy of a profile a
// rotation elsewhere left behind can still receive the new version (its
// writes to the shared store need that version).
func KRDRequestOnline(store *keystore.Store, cust *custody.Custodian) (*x509.Certificate, []byte, error) {
	cert, _, err := Identity(store, cust)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return cert, nonce, nil
}

// Export builds, as the KDH, a TR-34 token carrying profile's main key for the
// KRD certificate and nonce. It returns the token, this appliance's
// certificate and the key's check value.
func Export(store *keystore.Store, cust *custody.Custodian, profile string, krd *x509.Certificate, nonce []byte) ([]byte, *x509.Certificate, string, error) {
	if len(nonce) < 8 {
		return nil, nil, "", errors.New("the receiving appliance's nonce is missing or too short")
	}
	kdh, kdhKey, err := Identity(store, cust)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := cust.Profile(profile)
	if err != nil {
		return nil, nil, "", err
	}
	key, err := cust.ExportProfileKey(profile)
	if err != nil {
		return nil, nil, "", err
	}
	defer clear(key)
	tok, err := build(key, nonce, kdh, kdhKey, krd)
	if err != nil {
		return nil, nil, "", err
	}
	return tok, kdh, p.KCV(), nil
}

// Import verifies a TR-34 token against the KDH certificate and this
// appliance's pending nonce (used once), opens it and installs the key as
// profile, refusing when wantKCV is given and differs. It returns the KCV.
// A fleet node whose copy of profile is older than another node's (a
// rotation made there) adopts the key as that newer version instead.
func Import(store *keystore.Store, cust *custody.Custodian, profile string, kdh *x509.Certificate, token []byte, wantKCV string) (string, error) {
	return importToken(store, cust, profile, kdh, token, wantKCV, nil)
}

// ImportWithNonce is Import with the pending nonce KRDRequestOnline gave
// (the caller forgets it first: it is used once) instead of the stored one.
func ImportWithNonce(store *keystore.Store, cust *custody.Custodian, profile string, kdh *x509.Certificate, token []byte, wantKCV string, nonce []byte) (string, error) {
	if len(nonce) == 0 {
		return "", errors.New("no nonce is pending: run the KRD request first")
	}
	return importToken(store, cust, profile, kdh, token, wantKCV, nonce)
}

// importToken imports with nonce, or the stored nonce when nonce is nil.
func importToken(store *keystore.Store, cust *custody.Custodian, profile string, kdh *x509.Certificate, token []byte, wantKCV string, nonce []byte) (string, error) {
	// A fleet node whose copy a rotation elsewhere left behind adopts the
	// newer version (custody.AdoptFleetVersion); otherwise an existing
	// profile is never overwritten.
	catchUp := false
	if _, err := cust.Profile(profile); err == nil {
		if !errors.Is(cust.CheckFleetProfile(profile), custody.ErrStaleProfile) {
			return "", fmt.Errorf("profile %q already has a main key; it is not overwritten", profile)
		}
		catchUp = true
	}
	stored := nonce == nil
	if stored {
		var err error
		nonce, err = store.GetMeta(cust.MetaName(metaKRDNonce))
		if err != nil || len(nonce) == 0 {
			return "", errors.New("no nonce is pending: run the KRD request first")
		}
	}
	key, err := OpenToken(store, cust, kdh, token, nonce)
	if err != nil {
		return "", err
	}
	defer clear(key)
	if got := KCV(key); wantKCV != "" && got != strings.ToUpper(wantKCV) {
		return "", fmt.Errorf("the transported key has KCV %s, expected %s: refused, nothing stored", got, wantKCV)
	}
	// The nonce is used up before the key is installed: a token is never
	// accepted twice. (An online nonce was forgotten by the caller.)
	if stored {
		if err := store.PutMeta(cust.MetaName(metaKRDNonce), []byte{}); err != nil { // an empty nonce matches no token
			return "", fmt.Errorf("use up the nonce: %w", err)
		}
	}
	install := cust.InstallProfile
	if catchUp {
		install = cust.AdoptFleetVersion
	}
	p, err := install(profile, key)
	if err != nil {
		return "", err
	}
	return p.KCV(), nil
}

// OpenToken verifies a TR-34 token carrying a profile main key: signed by
// the KDH certificate's key, for nonce (this appliance's, used once: the
// caller forgets it), opened with this appliance's device key. It returns
// the AES-256 key; the caller zeroes it.
func OpenToken(store *keystore.Store, cust *custody.Custodian, kdh *x509.Certificate, token, nonce []byte) ([]byte, error) {
	tok, err := tr34.Parse(token)
	if err != nil {
		return nil, err
	}
	pub, ok := kdh.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the KDH certificate must hold an RSA key")
	}
	if err := tok.Verify(pub); err != nil {
		return nil, err
	}
	if len(nonce) == 0 || string(nonce) != string(tok.Nonce) {
		return nil, errors.New("the token does not carry this appliance's current nonce (replayed or for another request)")
	}
	_, krdKey, err := Identity(store, cust)
	if err != nil {
		return nil, err
	}
	key, err := tok.Open(krdKey)
	if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		clear(key)
		return nil, errors.New("the transported key is not an AES-256 main key: refused, nothing stored")
	}
	return key, nil
}

// ExportStaged builds, as the KDH, a TR-34 token carrying profile's main
// key version staged for a fleet rotation (custody.StagedKey) for another
// node's device certificate and nonce. It returns the token and this
// node's certificate.
func ExportStaged(store *keystore.Store, cust *custody.Custodian, profile string, version int, krd *x509.Certificate, nonce []byte) ([]byte, *x509.Certificate, error) {
	if len(nonce) < 8 {
		return nil, nil, errors.New("the receiving node's nonce is missing or too short")
	}
	kdh, kdhKey, err := Identity(store, cust)
	if err != nil {
		return nil, nil, err
	}
	key, err := cust.StagedKey(profile, version)
	if err != nil {
		return nil, nil, err
	}
	defer clear(key)
	tok, err := build(key, nonce, kdh, kdhKey, krd)
	if err != nil {
		return nil, nil, err
	}
	return tok, kdh, nil
}

// build makes the TR-34 token of a main key: a key-encryption key (K1,
// AES, wrap and unwrap only, not exportable) for the KRD and its nonce,
// signed by the KDH.
func build(key, nonce []byte, kdh *x509.Certificate, kdhKey *rsa.PrivateKey, krd *x509.Certificate) ([]byte, error) {
	hdr, err := tr34.EncodeHeader(tr31.Header{Version: 'D', KeyUsage: "K1", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'})
	if err != nil {
		return nil, err
	}
	return tr34.Build(tr34.BuildInput{Key: key, Header: hdr, Nonce: nonce, KDH: kdh, KDHKey: kdhKey, KRD: krd, UseAES: true})
}

// KCV is the AES-CMAC check value of an AES-256 key or component ("" for a
// key that is not an AES key).
func KCV(key []byte) string {
	b, err := aes.NewCipher(key)
	if err != nil {
		return ""
	}
	return strings.ToUpper(hex.EncodeToString(kcv.CMAC(b)))
}
