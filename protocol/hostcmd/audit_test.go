package hostcmd

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"payhsm/audit"
)

func openTestTrail(t *testing.T, dir string) *audit.Trail {
	t.Helper()
	trail, err := audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{9}, audit.RootKeySize), Writer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return trail
}

func readTrail(t *testing.T, dir string) []*audit.Parsed {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, audit.ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("4123456789012345")) {
		t.Errorf("the trail holds the PAN:\n%s", b)
	}
	var out []*audit.Parsed
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte{'\n'}) {
		p, err := audit.ParseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestAuditDataEvents: with data events on, every answered command is
// recorded with its client, key fields (a block by its header only) and the
// PAN masked; with them off, none is.
func TestAuditDataEvents(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv string) {
		for _, data := range []bool{false, true} {
			dir := t.TempDir()
			trail := openTestTrail(t, dir)
			ts := startServer(t, nil, Config{Driver: drv}, func(s *Server) { s.SetAudit(trail, "000000000000", data) })
			c := ts.dial(t, nil)
			m := regexp.MustCompile(`^0001A100S([A-Z0-9]+)[0-9A-F]{6}$`).FindStringSubmatch(c.call("0001A00FFFS#C0T2C00N00"))
			if m == nil {
				t.Fatal("A0 failed")
			}
			blk := m[1]
			if got := c.call("0002CWS" + blk + "4123456789012345;8701101"); !strings.HasPrefix(got, "0002CX00") {
				t.Fatalf("CW %q", got)
			}
			if got := c.call("0003CWS" + blk + "12;8701101"); strings.HasPrefix(got, "0003CX00") {
				t.Fatalf("CW with a short PAN %q", got)
			}
			if err := trail.Close(); err != nil {
				t.Fatal(err)
			}
			var events []*audit.Parsed
			for _, e := range readTrail(t, dir) {
				if e.Kind == audit.KindData {
					events = append(events, e)
				}
			}
			if !data {
				if len(events) != 0 {
					t.Errorf("%d data events without opting in", len(events))
				}
				continue
			}
			if len(events) != 3 {
				t.Fatalf("%d data events, want 3", len(events))
			}
			a0, cw, bad := events[0], events[1], events[2]
			if a0.Operation != "A0" || a0.Outcome != audit.OK || a0.Protocol != "host" || !strings.HasPrefix(a0.Source, "127.0.0.1:") || a0.Profile != "default" {
				t.Errorf("A0 event %+v", a0.Event)
			}
			if cw.Operation != "CW" || cw.MaskedPAN != "412345******2345" || len(cw.Keys) != 1 || cw.Keys[0] != "S"+blk[:16] {
				t.Errorf("CW event %+v pan %q", cw.Event, cw.MaskedPAN)
			}
			if bad.Operation != "CW" || bad.Outcome != audit.Refused || bad.Error == "" || bad.Error == "00" {
				t.Errorf("refused CW event %+v", bad.Event)
			}
		}
	})
}

// TestAuditDeniesClient: a client outside the allow-list is a denial on record.
func TestAuditDeniesClient(t *testing.T) {
	ca, caKey := selfCA(t)
	serverCert := leaf(t, ca, caKey, "payhsm", x509.ExtKeyUsageServerAuth)
	carol := leaf(t, ca, caKey, "carol", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	dir := t.TempDir()
	trail := openTestTrail(t, dir)
	ts := startServer(t, nil, Config{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, AllowedClients: []string{"alice"}},
		func(s *Server) { s.SetAudit(trail, "000000000000", false) })
	c := ts.dial(t, &tls.Config{RootCAs: pool, ServerName: "payhsm", Certificates: []tls.Certificate{carol}})
	c.send("0001B20002OK")
	if !c.closed() {
		t.Fatal("client outside the allow-list served")
	}
	deadline := time.Now().Add(5 * time.Second)
	for trail.Lag().Seq < 2 && time.Now().Before(deadline) { // the start entry, then the denial
		time.Sleep(10 * time.Millisecond)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	var denials []*audit.Parsed
	for _, e := range readTrail(t, dir) {
		if e.Kind == audit.KindDenial {
			denials = append(denials, e)
		}
	}
	if len(denials) != 1 || denials[0].Principal != "carol" || denials[0].Operation != "connect" || denials[0].Outcome != audit.Denied {
		t.Fatalf("denials %v", denials)
	}
}

// TestAuditNoPINOrKey: PIN commands' events hold neither the PIN block,
// nor the account number, nor a key block beyond its header.
func TestAuditNoPINOrKey(t *testing.T) {
	dir := t.TempDir()
	trail := openTestTrail(t, dir)
	ts := startServer(t, nil, Config{}, func(s *Server) { s.SetAudit(trail, "000000000000", true) })
	c := ts.dial(t, nil)
	gen := func(a string) string { r := c.call("0000A00FFFS#" + a); return r[8 : len(r)-6] }
	zpka, zpkb, pvk := gen("P0T2B00N00"), gen("P0T2B00N00"), gen("V1T2C00N00")
	r := c.call("0001EE" + zpka + "01" + pvk + "1234FFFFFFFF04555555123456" + "0123456789012345" + "1234567N8901")
	if !strings.HasPrefix(r, "0001EF00") {
		t.Fatal(r)
	}
	block := r[8 : 8+16]
	if got := c.call("0002CC" + zpka + zpkb + "12" + block + "0101555555123456"); !strings.HasPrefix(got, "0002CD00") {
		t.Fatal(got)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, audit.ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{block, "555555123456", zpka[1:], zpkb[1:], pvk[1:]} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the trail holds %q:\n%s", secret, raw)
		}
	}
	var cc *audit.Parsed
	for _, e := range readTrail(t, dir) {
		if e.Kind == audit.KindData && e.Operation == "CC" {
			cc = e
		}
	}
	if cc == nil || cc.MaskedPAN == "" || len(cc.Keys) != 2 || cc.Keys[0] != zpka[:17] {
		t.Fatalf("CC event %+v", cc)
	}
}
