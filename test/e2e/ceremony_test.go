package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var components = []string{
	"0123456789ABCDEFFEDCBA98765432100123456789ABCDEFFEDCBA9876543210",
	"1F2E3D4C5B6A79880102030405060708A1B2C3D4E5F60718293A4B5C6D7E8F90",
	"89ABCDEF0123456776543210FEDCBAB9C0FFEE00DEADBEEF0BADF00D12345678",
}

// opensslCMACKCV is the AES-CMAC check value of an AES-256 key computed by OpenSSL (an independent implementation).
func opensslCMACKCV(t *testing.T, keyHex string) string {
	t.Helper()
	cmd := exec.Command("openssl", "mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:"+keyHex, "CMAC")
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("openssl mac: %v", err)
	}
	return strings.ToUpper(strings.TrimSpace(string(out)))[:6]
}

func xorHex(t *testing.T, hs ...string) string {
	out := make([]byte, 32)
	for _, h := range hs {
		b, _ := hex.DecodeString(h)
		for i := range out {
			out[i] ^= b[i]
		}
	}
	return strings.ToUpper(hex.EncodeToString(out))
}

func ceremonyFile(t *testing.T, compKCVs []string, kcv string) string {
	path := filepath.Join(t.TempDir(), "ceremony.json")
	quoted := make([]string, len(compKCVs))
	for i, k := range compKCVs {
		quoted[i] = `"` + k + `"`
	}
	spec := fmt.Sprintf(`{"custodians":["alice","bob","carol"],"profiles":[{"name":"default"},
		{"name":"lmk01","components":3,"componentKCVs":[%s],"kcv":"%s"}]}`, strings.Join(quoted, ","), kcv)
	check(t, os.WriteFile(path, []byte(spec), 0o600))
	return path
}

// initInput is what the custodians type during init: passphrases, then each component by a different custodian.
func initInput(comps []string) string {
	var b strings.Builder
	for _, p := range []string{"alice-passphrase", "bob-passphrase!", "carol-passphrase"} {
		fmt.Fprintf(&b, "%s\n%s\n", p, p)
	}
	for i, who := range [][2]string{{"alice", "alice-passphrase"}, {"bob", "bob-passphrase!"}, {"carol", "carol-passphrase"}} {
		fmt.Fprintf(&b, "%s\n%s\n%s\ny\n", who[0], who[1], comps[i])
	}
	return b.String()
}

func TestCeremonyInitFromComponents(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	var compKCVs []string
	for _, c := range components {
		compKCVs = append(compKCVs, opensslCMACKCV(t, c))
	}
	combinedKCV := opensslCMACKCV(t, xorHex(t, components...))

	// A wrong component check value is refused before anything is stored.
	dir := t.TempDir()
	bad := append([]string{}, compKCVs...)
	bad[1] = "000000"
	out, err := runCeremony(t, dir, initInput(components), "init", "--ceremony", ceremonyFile(t, bad, combinedKCV))
	if err == nil || !strings.Contains(out, "component 2 has KCV "+compKCVs[1]) {
		t.Fatalf("a wrong component KCV was not refused: %v\n%s", err, out)
	}
	if st, _ := runCeremony(t, dir, "", "status"); strings.Contains(st, "lmk01") {
		t.Fatalf("a refused profile was stored:\n%s", st)
	}

	// The right components give the combined KCV OpenSSL computes.
	dir = t.TempDir()
	out, err = runCeremony(t, dir, initInput(components), "init", "--ceremony", ceremonyFile(t, compKCVs, combinedKCV))
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Profile lmk01: main key formed from 3 components, KCV "+combinedKCV) {
		t.Fatalf("init output:\n%s", out)
	}
	for i, k := range compKCVs {
		if !strings.Contains(out, fmt.Sprintf("Component %d KCV: %s", i+1, k)) {
			t.Errorf("component %d KCV %s not shown", i+1, k)
		}
	}
	// Init refuses to run twice.
	if out, err := runCeremony(t, dir, initInput(components), "init", "--ceremony", ceremonyFile(t, compKCVs, combinedKCV)); err == nil {
		t.Fatalf("second init accepted:\n%s", out)
	}
	// The daemon serves the profile: NC with LMK identifier 01 reports its KCV.
	d := startDaemon(t, dir)
	c, err := net.Dial("tcp", d.hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	check(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	msg := "HDR1NC%01"
	writeAll(t, c, append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
	resp := make([]byte, 2+4+4+16+9)
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	check(t, c.Close())
	if got := string(resp[2:]); !strings.HasPrefix(got, "HDR1ND00"+combinedKCV) {
		t.Errorf("NC %%01 answered %q, want KCV %s", got, combinedKCV)
	}
	d.stop()

	// The audit log records every step with custodians and KCVs, and no component.
	audit, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"operation":"load-components"`) || !strings.Contains(string(audit), combinedKCV) {
		t.Errorf("audit log:\n%s", audit)
	}
	// No clear component or combined key anywhere in the data directory, logs or ceremony output.
	secrets := append([]string{xorHex(t, components...)}, components...)
	haystacks := map[string][]byte{"ceremony output": []byte(out), "daemon logs": []byte(d.logs.String())}
	check(t, filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		haystacks[p], err = os.ReadFile(p)
		return err
	}))
	for where, b := range haystacks {
		for _, s := range secrets {
			raw, _ := hex.DecodeString(s)
			if bytes.Contains(b, []byte(s)) || bytes.Contains(b, []byte(strings.ToLower(s))) || bytes.Contains(b, raw) {
				t.Errorf("a clear component or key appears in %s", where)
			}
		}
	}
}

// TestCeremonySerialConsole drives init over a serial line: a pseudo-terminal pair made by socat.
func TestCeremonySerialConsole(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat not installed (make test installs it)")
	}
	tmp := t.TempDir()
	hsmEnd, opEnd := filepath.Join(tmp, "hsm"), filepath.Join(tmp, "operator")
	socat := exec.Command("socat", "pty,raw,echo=0,link="+hsmEnd, "pty,raw,echo=0,link="+opEnd)
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := socat.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("kill socat: %v", err)
		}
	}()
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(opEnd); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	op, err := os.OpenFile(opEnd, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, op)
	var compKCVs []string
	for _, c := range components {
		compKCVs = append(compKCVs, opensslCMACKCV(t, c))
	}
	combined := opensslCMACKCV(t, xorHex(t, components...))
	dir := t.TempDir()
	done := make(chan error, 1)
	var stdout bytes.Buffer
	go func() {
		cmd := exec.Command(binPath, "ceremony", "init", "--dev", "--data-dir", dir, "--serial", hsmEnd,
			"--ceremony", ceremonyFile(t, compKCVs, combined))
		cmd.Stdout, cmd.Stderr = &stdout, &stdout
		done <- cmd.Run()
	}()
	// The operator types on the other end of the line; the console answers there.
	// A failed write or read on the line shows as the ceremony's failure below.
	go func() { _, _ = io.WriteString(op, strings.ReplaceAll(initInput(components), "\n", "\r")) }()
	var screen bytes.Buffer
	go func() { _, _ = io.Copy(&screen, op) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serial init: %v\n%s\n%s", err, stdout.String(), screen.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serial init did not finish\n%s", screen.String())
	}
	time.Sleep(200 * time.Millisecond)
	s := screen.String()
	if !strings.Contains(s, "Profile lmk01: main key formed from 3 components, KCV "+combined) || !strings.Contains(s, "\r\n") {
		t.Errorf("serial screen:\n%q", s)
	}
	for _, c := range components {
		if strings.Contains(s, c) {
			t.Errorf("a component was echoed on the serial console")
		}
	}

	// load-components over the same line: a second profile from two components.
	spec2 := filepath.Join(t.TempDir(), "load.json")
	want2 := opensslCMACKCV(t, xorHex(t, components[0], components[2]))
	check(t, os.WriteFile(spec2, []byte(`{"custodians":["alice","bob","carol"],"profiles":[{"name":"lmk02","components":2,"kcv":"`+want2+`"}]}`), 0o600))
	go func() {
		cmd := exec.Command(binPath, "ceremony", "load-components", "--dev", "--data-dir", dir, "--serial", hsmEnd,
			"--ceremony", spec2, "--profile", "lmk02")
		cmd.Stdout, cmd.Stderr = &stdout, &stdout
		done <- cmd.Run()
	}()
	time.Sleep(300 * time.Millisecond) // the port is opened by the new process
	in := "alice\ralice-passphrase\rbob\rbob-passphrase!\r" +
		"carol\rcarol-passphrase\r" + components[0] + "\ry\r" + "alice\ralice-passphrase\r" + components[2] + "\ry\r"
	writeAll(t, op, []byte(in))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serial load-components: %v\n%s\n%s", err, stdout.String(), screen.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serial load-components did not finish\n%s", screen.String())
	}
	time.Sleep(200 * time.Millisecond)
	if !strings.Contains(screen.String(), "Profile lmk02: main key formed from 2 components, KCV "+want2) {
		t.Errorf("serial screen after load-components:\n%q", screen.String())
	}
}

func runCeremony(t *testing.T, dir, input string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"ceremony"}, args[0])
	full = append(full, "--dev", "--data-dir", dir)
	full = append(full, args[1:]...)
	cmd := exec.Command(binPath, full...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCeremonyOverwrite: re-initializing an appliance needs --overwrite, two
// custodians and the typed confirmation; then the old region main key is gone
// from the token and a new hierarchy stands.
func TestCeremonyOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := filepath.Join(t.TempDir(), "c.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	enrol := "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n"
	if out, err := runCeremony(t, dir, enrol, "init", "--ceremony", spec); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	st, _ := runCeremony(t, dir, "", "status")
	m := regexp.MustCompile(`Region main key KCV: ([0-9A-F]{6})`).FindStringSubmatch(st)
	if m == nil {
		t.Fatalf("status:\n%s", st)
	}
	old := m[1]
	approve := "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
	if out, err := runCeremony(t, dir, approve+"erase\n", "init", "--overwrite", "--ceremony", spec); err == nil || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("overwrite without the typed confirmation: %v\n%s", err, out)
	}
	out, err := runCeremony(t, dir, approve+"ERASE "+old+"\n"+enrol, "init", "--overwrite", "--ceremony", spec)
	if err != nil || !strings.Contains(out, "Appliance erased") || !strings.Contains(out, "Initialization complete") {
		t.Fatalf("overwrite: %v\n%s", err, out)
	}
	st, _ = runCeremony(t, dir, "", "status")
	if strings.Contains(st, "Region main key KCV: "+old) {
		t.Fatalf("the old region main key survived:\n%s", st)
	}
}
