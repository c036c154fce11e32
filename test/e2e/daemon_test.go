package e2e

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdNotify runs the daemon as systemd's Type=notify would: READY=1
// once both listeners accept, STOPPING=1 on SIGTERM, then a clean exit.
func TestSystemdNotify(t *testing.T) {
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, conn)
	t.Setenv("NOTIFY_SOCKET", sockPath)
	d := startDaemon(t, t.TempDir())
	buf := make([]byte, 256)
	check(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify: %q %v", buf[:n], err)
	}
	// Both listeners accept by then.
	for _, addr := range []string{strings.TrimPrefix(d.httpURL, "http://"), d.hostAddr} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("%s not accepting after READY=1: %v", addr, err)
		}
		check(t, c.Close())
	}
	d.stop()
	n, err = conn.Read(buf)
	if err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Fatalf("notify on stop: %q %v", buf[:n], err)
	}
	if !strings.Contains(d.logs.String(), "keystore closed") {
		t.Errorf("the keystore was not closed cleanly:\n%s", d.logs)
	}
}

// TestRefusesWrongToken: a keystore sealed under one token's region main key
// refuses to start without that token: with no token (in --dev the missing
// token is not replaced by a new, empty one; the refusal is production's),
// and with another appliance's token of the same label.
func TestRefusesWrongToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	d.stop()
	if err := os.RemoveAll(filepath.Join(dir, "softhsm")); err != nil {
		t.Fatal(err)
	}
	serve := func() string {
		t.Helper()
		cmd := exec.Command(binPath, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("daemon started without the token of its key store:\n%s", out)
		}
		return string(out)
	}
	if out := serve(); !strings.Contains(out, "could not find PKCS#11 token") {
		t.Errorf("unclear refusal without a token:\n%s", out)
	}
	tokens, err := os.ReadDir(filepath.Join(dir, "softhsm", "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 0 {
		t.Errorf("a new token was created for an existing key store: %v", tokens)
	}
	// Another appliance's token, same label, another region main key.
	other := t.TempDir()
	startDaemon(t, other).stop()
	if err := os.RemoveAll(filepath.Join(dir, "softhsm")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "softhsm"), os.DirFS(filepath.Join(other, "softhsm"))); err != nil {
		t.Fatal(err)
	}
	if out := serve(); !strings.Contains(out, "wrong token") {
		t.Errorf("unclear refusal on another token:\n%s", out)
	}
}

// TestConfigValidation: without --dev, a bad configuration is refused at start with every problem named.
func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "payhsm.json")
	check(t, os.WriteFile(cfg, []byte(`{"http":{"addr":"0.0.0.0:8443"},"region":"nowhere","pkcs11":{"module":"/x.so"}}`), 0o600))
	out, err := exec.Command(binPath, "serve", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v:\n%s", err, out)
	}
	for _, want := range []string{"region", "tokenLabel", "pinFile", "credentialsFile", "not a loopback address"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message does not name %q:\n%s", want, out)
		}
	}
	check(t, os.WriteFile(cfg, []byte(`{"bogus":1}`), 0o600))
	if out, err := exec.Command(binPath, "serve", "--config", cfg).CombinedOutput(); err == nil || !strings.Contains(string(out), "bogus") {
		t.Errorf("unknown member accepted: %s", out)
	}
}

// TestHostPortDiagnostics: the host port answers NC (diagnostics) with the
// profile main key's check value, echoes the header, answers pipelined and
// split frames, and answers unknown commands and bad frames (zero length,
// oversize) without stalling.
func TestHostPortDiagnostics(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c, err := net.Dial("tcp", d.hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, c)
	check(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	send := func(msg string) {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
		if _, err := c.Write(append(b, msg...)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() string {
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Pipelined: three requests in one write, answered in order.
	var batch []byte
	for _, m := range []string{"0001NC", "0002ZZ", "0003B20004PING"} {
		batch = binary.BigEndian.AppendUint16(batch, uint16(len(m)))
		batch = append(batch, m...)
	}
	writeAll(t, c, batch)
	nc := recv()
	if !strings.HasPrefix(nc, "0001ND00") || len(nc) != 8+16+9 {
		t.Errorf("NC answer %q", nc)
	}
	if got := recv(); got != "0002Z[68" && got != "0002ZA68" {
		t.Errorf("unknown command answer %q", got)
	}
	if got := recv(); got != "0003B300PING" {
		t.Errorf("B2 echo %q", got)
	}
	// A trailer is echoed; an unknown LMK identifier is refused with 13.
	send("0004NC\x19TRL")
	if got := recv(); !strings.HasPrefix(got, "0004ND00") || !strings.HasSuffix(got, "\x19TRL") {
		t.Errorf("NC with trailer %q", got)
	}
	send("0005NC%07")
	if got := recv(); got != "0005ND13" {
		t.Errorf("NC with unknown LMK %q", got)
	}
	// A zero-length frame closes the connection; the server keeps serving others.
	writeAll(t, c, []byte{0, 0})
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection stayed open after a zero-length frame")
	}
	c2, err := net.Dial("tcp", d.hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, c2)
	c = c2
	check(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	send("0006NO00")
	if got := recv(); !strings.HasPrefix(got, "0006NP00") {
		t.Errorf("NO answer %q", got)
	}
	// A frame split across writes is answered once whole.
	split := append(binary.BigEndian.AppendUint16(nil, 12), "0007B20002OK"...)
	for _, part := range [][]byte{split[:1], split[1:5], split[5:]} {
		writeAll(t, c, part)
		time.Sleep(20 * time.Millisecond)
	}
	if got := recv(); got != "0007B300OK" {
		t.Errorf("split frame answer %q", got)
	}
	// A length above the maximum message (32 KiB) closes the connection.
	writeAll(t, c, []byte{0xFF, 0xFF})
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection stayed open after an oversize length")
	}
}
