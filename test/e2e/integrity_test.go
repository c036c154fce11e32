package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	"github.com/aws/smithy-go"
	"github.com/cockroachdb/pebble/v2"
)

// The documented answers to a record that failed its integrity check.
const (
	integrityMessage = "the key record failed its integrity check"
	integrityCode    = "33"
)

// editStore opens the stopped daemon's Pebble store and lets edit change raw
// values: an attacker (or a restored backup, or a bug) with write access to
// the data directory.
func editStore(t *testing.T, dir string, edit func(get func(k string) []byte, set func(k string, v []byte))) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "keystore"), &pebble.Options{Logger: quietLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) []byte {
		v, c, err := db.Get([]byte(k))
		if err != nil {
			t.Fatalf("raw get %q: %v", k, err)
		}
		defer closeT(t, c)
		return bytes.Clone(v)
	}
	set := func(k string, v []byte) {
		if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	edit(get, set)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// quietLogger keeps Pebble's informational lines out of the test output.
type quietLogger struct{ t *testing.T }

func (quietLogger) Infof(string, ...any)                {}
func (l quietLogger) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }
func (l quietLogger) Fatalf(format string, args ...any) { l.t.Fatalf("pebble: "+format, args...) }

// replaceOnce replaces old by new in v, failing when old is not there.
func replaceOnce(t *testing.T, v []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(v, []byte(old)) {
		t.Fatalf("%q not in the record", old)
	}
	return bytes.Replace(v, []byte(old), []byte(new), 1)
}

func keyID(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

// isIntegrityError reports whether err is the AWS answer to a record that
// failed its integrity check: InternalServerException with the one message.
func isIntegrityError(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InternalServerException" && ae.ErrorMessage() == integrityMessage
}

// verifyCLI runs payhsm keystore verify on dir and returns its exit code and
// the failures it listed ("type name" each, sorted).
func verifyCLI(t *testing.T, dir string) (int, []string, string) {
	t.Helper()
	cmd := exec.Command(binPath, "keystore", "verify", "--dev", "--data-dir", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			listed = append(listed, f[0]+" "+f[1])
		}
	}
	sort.Strings(listed)
	return code, listed, stderr.String()
}

// cvvCall generates a CVV2 with ident; it returns the status, the error type
// and the message.
func cvvCall(t *testing.T, d *daemon, ident string) (int, string, string) {
	t.Helper()
	st, body, typ := d.dataCall(t, "/cardvalidationdata/generate", map[string]any{
		"KeyIdentifier": ident, "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "1226"}}})
	msg, _ := body["Message"].(string)
	if msg == "" {
		msg, _ = body["message"].(string)
	}
	return st, typ, msg
}

// TestExportabilityAttack: a key created non-exportable, its record's
// Exportable flag flipped on disk while the daemon is stopped. After the
// restart the key is refused for everything, with the documented answer on
// both front ends, and nothing leaves; every other key serves; payhsm
// keystore verify lists exactly that record, through the daemon and
// offline.
func TestExportabilityAttack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()
	secret := createKey(t, c, attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), false)
	kek := createKey(t, c, attrs(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmAes256, modesEDWU), true)
	cvk := createKey(t, c, attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true}), true)
	if _, err := exportTR31(c, *secret.KeyArn, *kek.KeyArn, nil, nil); !isErr[*types.ValidationException](err) {
		t.Fatalf("export of a non-exportable key before the attack: %v", err)
	}
	call := d.hostCaller(t)
	if r := call("A8", "FFF@"+*kek.KeyArn+";@"+*secret.KeyArn+";R"); r.Error != "AA" {
		t.Fatalf("A8 of a non-exportable key before the attack: %s", r.Error)
	}
	cw := call("CW", "@"+*cvk.KeyArn+";4123456789012345;8701101")
	if cw.Error != "00" {
		t.Fatalf("CW: %s", cw.Error)
	}
	d.stop()

	editStore(t, dir, func(get func(string) []byte, set func(string, []byte)) {
		k := "k/" + keyID(*secret.KeyArn)
		// Same length, valid JSON: only the tag can tell.
		set(k, replaceOnce(t, get(k), `"exportable":false`, `"exportable":true `))
	})
	d = startDaemon(t, dir)
	c = d.client()
	if _, err := exportTR31(c, *secret.KeyArn, *kek.KeyArn, nil, nil); !isIntegrityError(err) {
		t.Fatalf("ExportKey of the tampered key: %v", err)
	}
	if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: secret.KeyArn}); !isIntegrityError(err) {
		t.Errorf("GetKey of the tampered key: %v", err)
	}
	st, body, typ := d.dataCall(t, "/keys/"+url.PathEscape(*secret.KeyArn)+"/encrypt", map[string]any{"PlainText": "00112233445566778899AABBCCDDEEFF",
		"EncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}})
	if st != 500 || typ != "InternalServerException" || body["Message"] != integrityMessage {
		t.Errorf("EncryptData with the tampered key: %d %s %v", st, typ, body)
	}
	call = d.hostCaller(t)
	if r := call("A8", "FFF@"+*kek.KeyArn+";@"+*secret.KeyArn+";R"); r.Error != integrityCode {
		t.Errorf("A8 of the tampered key: %s %q", r.Error, r.Fields)
	}
	// Every other key serves.
	if r := call("CW", "@"+*cvk.KeyArn+";4123456789012345;8701101"); r.Error != "00" || string(r.Fields) != string(cw.Fields) {
		t.Errorf("CW with an untouched key: %s %q", r.Error, r.Fields)
	}
	if _, err := exportTR31(c, *cvk.KeyArn, *kek.KeyArn, nil, nil); err != nil {
		t.Errorf("export of an untouched exportable key: %v", err)
	}
	// Loud: the start-up check logged it, naming the key and the record type.
	if logs := d.logs.String(); !strings.Contains(logs, `"type":"key","record":"`+keyID(*secret.KeyArn)) ||
		!strings.Contains(logs, "the key store holds records that failed their integrity check") {
		t.Errorf("no error log naming the record:\n%s", logs)
	}
	want := []string{"key " + keyID(*secret.KeyArn)}
	if code, listed, out := verifyCLI(t, dir); code != 1 || !slices.Equal(listed, want) || !strings.Contains(out, "through the daemon") {
		t.Errorf("keystore verify through the daemon: exit %d, %v, want %v\n%s", code, listed, want, out)
	}
	d.stop()
	if code, listed, out := verifyCLI(t, dir); code != 1 || !slices.Equal(listed, want) || !strings.Contains(out, "offline") {
		t.Errorf("keystore verify offline: exit %d, %v, want %v\n%s", code, listed, want, out)
	}
}

// TestTamperedRecordsThroughTheDaemon damages records of every type the API
// writes, in the ways the issue lists (a flipped byte, an edited field —
// Enabled, KeyState, the usage window, an alias target —, two keys' records
// swapped, a tag, the profile CA's metadata), with the daemon stopped.
// After the restart each damaged record makes what depends on it fail with
// the documented answer on both front ends; an untouched key serves; verify
// lists exactly the damaged records.
func TestTamperedRecordsThroughTheDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()
	cvkAttrs := attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true})
	keys := map[string]string{}
	for _, role := range []string{"flipped", "enabled", "state", "window", "aliased", "tagged", "swapA", "swapB", "bystander"} {
		keys[role] = *createKey(t, c, cvkAttrs, true).KeyArn
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/victim"), KeyArn: aws.String(keys["aliased"])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: aws.String(keys["tagged"]), Tags: []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}}}); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"enabled", "window"} {
		if _, err := c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(keys[role])}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(keys["state"]), DeleteKeyInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeKeyCryptogram,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048}); err != nil { // creates the profile CA ("ca/default")
		t.Fatal(err)
	}
	d.stop()

	id := func(role string) string { return keyID(keys[role]) }
	editStore(t, dir, func(get func(string) []byte, set func(string, []byte)) {
		k := "k/" + id("flipped")
		v := get(k)
		v[len(v)/2] ^= 0x20
		set(k, v)
		k = "k/" + id("enabled") // StopKeyUsage undone by hand
		set(k, replaceOnce(t, get(k), `"enabled":false`, `"enabled":true `))
		k = "k/" + id("state") // DeleteKey undone by hand
		set(k, replaceOnce(t, get(k), `"state":"DELETE_PENDING"`, `"state":"CREATE_COMPLETE"`))
		k = "k/" + id("window") // the usage stop moved far away
		v = get(k)
		i := bytes.Index(v, []byte(`"usageStop":"`)) + len(`"usageStop":"`)
		copy(v[i:], "2999")
		set(k, v)
		set("a/alias/victim", replaceOnce(t, get("a/alias/victim"), id("aliased"), id("bystander")))
		k = "t/" + id("tagged") + "/env"
		set(k, replaceOnce(t, get(k), "prod", "test"))
		ka, kb := "k/"+id("swapA"), "k/"+id("swapB")
		va, vb := get(ka), get(kb)
		set(ka, vb)
		set(kb, va)
		set("m/ca/default", replaceOnce(t, get("m/ca/default"), `"v":1`, `"v":2`))
	})

	d = startDaemon(t, dir)
	c = d.client()
	call := d.hostCaller(t)
	for _, role := range []string{"flipped", "enabled", "state", "window", "tagged", "swapA", "swapB"} {
		if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(keys[role])}); !isIntegrityError(err) {
			t.Errorf("%s: GetKey: %v", role, err)
		}
		if st, typ, msg := cvvCall(t, d, keys[role]); st != 500 || typ != "InternalServerException" || msg != integrityMessage {
			t.Errorf("%s: CVV2 over HTTP: %d %s %q", role, st, typ, msg)
		}
		if r := call("CW", "@"+keys[role]+";4123456789012345;8701101"); r.Error != integrityCode {
			t.Errorf("%s: CW over the host port: %s", role, r.Error)
		}
	}
	// The re-pointed alias is refused; both keys it named and would name serve by ARN.
	if _, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/victim")}); !isIntegrityError(err) {
		t.Errorf("GetAlias of the edited alias: %v", err)
	}
	if st, typ, msg := cvvCall(t, d, "alias/victim"); st != 500 || typ != "InternalServerException" || msg != integrityMessage {
		t.Errorf("CVV2 through the edited alias: %d %s %q", st, typ, msg)
	}
	if r := call("CW", "@alias/victim;4123456789012345;8701101"); r.Error != integrityCode {
		t.Errorf("CW through the edited alias: %s", r.Error)
	}
	for _, role := range []string{"aliased", "bystander"} {
		if st, _, _ := cvvCall(t, d, keys[role]); st != 200 {
			t.Errorf("%s by ARN: %d", role, st)
		}
		if r := call("CW", "@"+keys[role]+";4123456789012345;8701101"); r.Error != "00" {
			t.Errorf("%s by ARN on the host port: %s", role, r.Error)
		}
	}
	// The profile CA's record is refused where it is used.
	if _, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeKeyCryptogram,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048}); !isIntegrityError(err) {
		t.Errorf("GetParametersForImport with the CA record edited: %v", err)
	}
	// Listings leave the damaged key records out and go on.
	list, err := c.ListKeys(ctx, &pc.ListKeysInput{})
	if err != nil || len(list.Keys) != len(keys)-6 {
		t.Errorf("ListKeys: %d keys, %v", len(list.Keys), err)
	}
	want := []string{"alias alias/victim", "key " + id("flipped"), "key " + id("enabled"), "key " + id("state"), "key " + id("window"),
		"key " + id("swapA"), "key " + id("swapB"), "meta ca/default", "tag " + id("tagged") + "/env"}
	sort.Strings(want)
	if code, listed, out := verifyCLI(t, dir); code != 1 || !slices.Equal(listed, want) {
		t.Errorf("keystore verify: exit %d\n got %v\nwant %v\n%s", code, listed, want, out)
	}
}

// TestUpgradeKeepsKeysAndTightensModes upgrades the format 1 fixture (whose
// keystore directory is 0755 with 0644 files, as umask 022 left it), checks
// that the migration ran, that every key answers as before, that the data
// directory became private, that verify finds nothing, that a restart
// migrates nothing more, and that the old store put back is refused.
func TestUpgradeKeepsKeysAndTightensModes(t *testing.T) {
	t.Parallel()
	dir, fx := loadV1Fixture(t)
	if fi, err := os.Stat(filepath.Join(dir, "keystore")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("fixture keystore mode: %v %v", fi.Mode(), err)
	}
	d := startDaemon(t, dir)
	logs := d.logs.String()
	if !strings.Contains(logs, "keystore migration finished") || !strings.Contains(logs, "tightened a data directory path") {
		t.Fatalf("no migration or no tightening logged:\n%s", logs)
	}
	checkV1Fixture(t, d, fx)
	checkPrivate(t, dir)
	if code, listed, out := verifyCLI(t, dir); code != 0 || len(listed) != 0 {
		t.Errorf("keystore verify after the upgrade: exit %d %v\n%s", code, listed, out)
	}
	d.stop()
	d = startDaemon(t, dir)
	if strings.Contains(d.logs.String(), "keystore migration") {
		t.Errorf("a second start migrated again:\n%s", d.logs)
	}
	checkV1Fixture(t, d, fx)
	d.stop()

	// The format 1 store put back (a downgrade, or an old backup) on this token is refused.
	old := t.TempDir()
	if err := extractTarGz(filepath.Join(v1FixtureDir, "datadir.tar.gz"), old); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "keystore")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(old, "keystore"), filepath.Join(dir, "keystore")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binPath, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "downgraded") {
		t.Errorf("a format 1 store on a marked token: %v\n%s", err, out)
	}
}

// checkPrivate checks that everything under dir is 0700 (directories) or
// 0600 (the rest).
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFreshDataDirIsPrivate starts a new appliance under umask 022, as a new
// user would: everything it creates is private.
func TestFreshDataDirIsPrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	d := startDaemonCmd(t, exec.Command("/bin/sh", "-c", `umask 022; exec "$0" "$@"`, binPath, "serve", "--dev", "--data-dir", dir,
		"--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0"))
	d.dir = dir
	d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
	createKey(t, d.client(), attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true}), true)
	d.stop()
	checkPrivate(t, dir)
}

// TestMigrationSurvivesSIGKILL kills the daemon with SIGKILL in the middle of
// upgrading the format 1 fixture, restarts it, and checks that the
// migration resumed where it stopped and that every key answers as before.
func TestMigrationSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	for attempt := 1; ; attempt++ {
		dir, fx := loadV1Fixture(t)
		killedAt := killDuringMigration(t, dir)
		d := startDaemon(t, dir)
		logs := d.logs.String()
		resumed := strings.Contains(logs, "keystore migration resumed")
		if !resumed && attempt < 5 {
			// The whole migration was done before the signal landed: try again.
			t.Logf("attempt %d: the migration finished before SIGKILL (killed at %q)", attempt, killedAt)
			d.stop()
			continue
		}
		if !resumed {
			t.Fatalf("the daemon was never killed mid-migration in %d attempts", attempt)
		}
		checkV1Fixture(t, d, fx)
		d.stop()
		if code, listed, out := verifyCLI(t, dir); code != 0 || len(listed) != 0 {
			t.Errorf("keystore verify after the resumed migration: exit %d %v\n%s", code, listed, out)
		}
		t.Logf("attempt %d: killed after %s; resumed", attempt, killedAt)
		return
	}
}

// killDuringMigration starts the daemon on dir and SIGKILLs it as soon as
// it reports its first migrated batch; it returns that report.
func killDuringMigration(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(binPath, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	at := ""
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m["msg"] == "keystore migration progress" {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			at = sc.Text()
			break
		}
		if m["msg"] == "payhsm ready" {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			at = "ready (no progress report seen)"
			break
		}
	}
	_, _ = io.Copy(io.Discard, stderr)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the daemon was not killed: %v (at %q)", err, at)
	}
	return at
}
