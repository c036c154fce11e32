package ceremony

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"payhsm/admin"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mainkey"
	"payhsm/hsm/custody"
)

// Main-key synchronization and backup for a specific HSM use ANSI X9 TR-34
// two-pass between device identities (package mainkey): the receiving
// appliance (KRD) issues its certificate and a one-time nonce, the sending
// appliance (KDH) builds a token for it, the KRD verifies, opens and installs
// it. Operators confirm both certificates' fingerprints. Offline, the passes
// travel as files; online (sync), through both daemons' admin sockets.

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the certificate file (--krd, --kdh).
	if err != nil {
		return nil, err
	}
	c, err := mainkey.ParseCertPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// krdRequest writes this appliance's certificate and a fresh one-time nonce
// (the KRD side's first pass).
func (s *session) krdRequest(certOut, nonceOut string) error {
	cert, nonce, err := mainkey.KRDRequest(s.app.Store, s.app.Custody)
	if err != nil {
		return err
	}
	if err := s.record(audit.Event{Operation: "krd-request", Outcome: audit.OK, Detail: "certificate " + mainkey.Fingerprint(cert)}); err != nil {
		return err
	}
	if err := os.WriteFile(certOut, mainkey.CertPEM(cert), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(nonceOut, []byte(strings.ToUpper(hex.EncodeToString(nonce))+"\n"), 0o600); err != nil {
		return err
	}
	s.con.Printf("This appliance's certificate is in %s, fingerprint (SHA-256):\n  %s\nNonce written to %s (valid for one import).\n", certOut, mainkey.Fingerprint(cert), nonceOut)
	return nil
}

// approve runs dual control on this console.
func (s *session) approve(op, profile string) ([]string, error) {
	rec, err := custodian.Load(s.app.Store, s.app.Custody)
	if err != nil {
		return nil, err
	}
	apps, err := approvals(s.con)
	if err != nil {
		return nil, err
	}
	who, err := rec.DualControl(custodianApprovals(apps))
	if err != nil {
		return nil, s.refused(op, profile, nil, err)
	}
	return who, nil
}

func confirmPeer(con *Console, role string, c *x509.Certificate) error {
	con.Printf("%s certificate %q, fingerprint (SHA-256):\n  %s\n", role, c.Subject.CommonName, mainkey.Fingerprint(c))
	ok, err := con.Confirm("Does this fingerprint match the one shown on the other appliance's console?")
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
	if err := confirmPeer(s.con, "Receiving appliance (KRD)", krd); err != nil {
		return s.refused("export-main-key", profile, who, err)
	}
	tok, kdh, kcv, err := mainkey.Export(s.app.Store, s.app.Custody, profile, krd, nonce)
	if err != nil {
		return s.refused("export-main-key", profile, who, err)
	}
	defer clear(tok)
	// The token is written only once its export is on record.
	if err := s.record(audit.Event{Operation: "export-main-key", Profile: profile, Custodians: who, Outcome: audit.OK,
		KCVs: map[string]string{"profile": kcv}, Detail: "TR-34 token for " + mainkey.Fingerprint(krd)}); err != nil {
		return err
	}
	if err := os.WriteFile(out, tok, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(out+".kdh.pem", mainkey.CertPEM(kdh), 0o600); err != nil {
		return err
	}
	s.con.Printf("Profile %s main key (KCV %s) exported as a TR-34 token to %s, signed by this appliance (certificate %s.kdh.pem):\n  %s\n",
		profile, kcv, out, out, mainkey.Fingerprint(kdh))
	return nil
}

// importMainKey verifies and opens a TR-34 token from the KDH and installs
// the main key as profile.
func (s *session) importMainKey(profile, kdhPath, tokenPath, wantKCV string) error {
	kdh, err := readCert(kdhPath)
	if err != nil {
		return err
	}
	der, err := os.ReadFile(tokenPath) //nolint:gosec // G304: the operator names the token file (--token).
	if err != nil {
		return err
	}
	if _, err := s.app.Custody.Profile(profile); err == nil {
		return fmt.Errorf("profile %q already has a main key; it is not overwritten", profile)
	}
	who, err := s.approve("import-main-key", profile)
	if err != nil {
		return err
	}
	if err := confirmPeer(s.con, "Sending appliance (KDH)", kdh); err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	kcv, err := mainkey.Import(s.app.Store, s.app.Custody, profile, kdh, der, wantKCV)
	if err != nil {
		return s.refused("import-main-key", profile, who, err)
	}
	if err := s.record(audit.Event{Operation: "import-main-key", Profile: profile, Custodians: who, Outcome: audit.OK,
		KCVs: map[string]string{"profile": kcv}, Detail: "TR-34 token from " + mainkey.Fingerprint(kdh)}); err != nil {
		return err
	}
	s.con.Printf("Profile %s main key imported from the TR-34 token, KCV %s\n", profile, kcv)
	return nil
}

// syncOnline moves profile's main key from the daemon behind fromSock (KDH)
// to the daemon behind toSock (KRD) through their admin sockets (local, or
// forwarded over SSH): the KRD's certificate and nonce, the token and the
// import travel between the daemons; each side's custodians approve its step
// and the operators confirm the other side's fingerprint.
func syncOnline(con *Console, fromSock, toSock, profile string) error {
	if err := custody.CheckProfileName(profile); err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	krdResp, err := admin.Call(toSock, &admin.Request{Op: admin.OpKRDRequest})
	if err != nil {
		return fmt.Errorf("receiving appliance: %w", err)
	}
	krd, err := mainkey.ParseCertPEM(krdResp.Certificate)
	if err != nil {
		return err
	}
	if err := confirmPeer(con, "Receiving appliance (KRD)", krd); err != nil {
		return err
	}
	con.Printf("Custodians of the SENDING appliance approve the export of profile %s.\n", profile)
	apps, err := approvals(con)
	if err != nil {
		return err
	}
	exp, err := admin.Call(fromSock, &admin.Request{Op: admin.OpExportMainKey, Profile: profile, Approvals: apps,
		Certificate: krdResp.Certificate, Nonce: krdResp.Nonce})
	clearApprovals(apps)
	if err != nil {
		return fmt.Errorf("sending appliance: %w", err)
	}
	defer clear(exp.Token)
	kdh, err := mainkey.ParseCertPEM(exp.Certificate)
	if err != nil {
		return err
	}
	if err := confirmPeer(con, "Sending appliance (KDH)", kdh); err != nil {
		return err
	}
	con.Printf("Custodians of the RECEIVING appliance approve the import of profile %s (KCV %s).\n", profile, exp.KCV)
	if apps, err = approvals(con); err != nil {
		return err
	}
	imp, err := admin.Call(toSock, &admin.Request{Op: admin.OpImportMainKey, Profile: profile, Approvals: apps,
		Certificate: exp.Certificate, Token: exp.Token, KCV: exp.KCV})
	clearApprovals(apps)
	if err != nil {
		return fmt.Errorf("receiving appliance: %w", err)
	}
	con.Printf("Profile %s synchronized online: KCV %s on both appliances.\n", profile, imp.KCV)
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
	p, err := s.app.Custody.Profile(profile)
	if err != nil {
		return err
	}
	key, err := s.app.Custody.ExportProfileKey(profile)
	if err != nil {
		return err
	}
	defer clear(key)
	rec, err := custodian.Load(s.app.Store, s.app.Custody)
	if err != nil {
		return err
	}
	// The components are shown only once the backup is on record.
	if err := s.record(audit.Event{Operation: "backup-components", Profile: profile, Custodians: who, Outcome: audit.Started,
		KCVs: map[string]string{"profile": p.KCV()}, Detail: fmt.Sprintf("%d components", n)}); err != nil {
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
		ck := mainkey.KCV(comp)
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
	if err := s.record(audit.Event{Operation: "backup-components", Profile: profile, Custodians: append(who, holders...), Outcome: audit.OK, KCVs: kcvs}); err != nil {
		return err
	}
	s.con.Printf("Profile %s main key (KCV %s) backed up as %d components.\n", profile, p.KCV(), n)
	return nil
}
