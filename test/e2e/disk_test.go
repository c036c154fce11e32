package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	"golang.org/x/sys/unix"

	"payhsm/admin"
	"payhsm/keyspec"
	"payhsm/protocol/hostcmd/transcript"
)

// TestDiskFull runs the daemon on a small filesystem of its own (a 64 MiB
// tmpfs the test mounts) with a 16 MiB free-space reserve, and fills it.
// Before, a full disk made the daemon exit (Pebble's fatal commit error) and
// a restart on it flooded the log and never became ready. Now: below the
// reserve every write is refused cleanly (ServiceUnavailableException; an
// online ceremony step too) while reads, the data plane and every host
// command keep working; freeing space resumes writes without a restart;
// a start on the full disk exits once, non-zero, with one clear line; and
// nothing acknowledged is lost.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	mnt := mountSmallFS(t, 64<<20)
	dir := filepath.Join(mnt, "data")
	const reserve = 16 << 20
	args := []string{"serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--disk-reserve", "16MiB"}
	start := func() *daemon {
		d := startDaemonArgs(t, args...)
		d.dir = dir
		d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
		return d
	}
	d := start()
	c := d.client()
	ctx := context.Background()

	// With room: every transcript's keys come in (and its commands run
	// once), the data-plane keys, and keys acknowledged to the client.
	transcripts := replayTranscripts(t, d, c)
	kk := newKnownKeys(t, c)
	encDec := types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	dp := dataPlaneKeys{
		aes: kk.arn(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, encDec, "2B7E151628AED2A6ABF7158809CF4F3C"),
		tdes: kk.arn(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmTdes2key, encDec,
			"0123456789ABCDEFFEDCBA9876543210"),
		mac: kk.arn(types.KeyUsageTr31M3Iso97973MacKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true},
			"AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"),
		cvk: kk.arn(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true},
			"0123456789ABCDEFFEDCBA9876543210"),
	}
	dp.check(t, d)
	var acked []string
	for i := 0; i < 20; i++ {
		acked = append(acked, createAESKey(t, c))
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/disk"), KeyArn: aws.String(acked[0])}); err != nil {
		t.Fatal(err)
	}

	// Below the reserve.
	filler := fill(t, mnt, reserve/2)
	refused := func(what string, err error) {
		t.Helper()
		var su *types.ServiceUnavailableException
		if !errors.As(err, &su) || !strings.Contains(su.ErrorMessage(), "refusing writes") ||
			!strings.Contains(su.ErrorMessage(), "reserve") {
			t.Errorf("%s below the reserve: %v, want ServiceUnavailableException saying why", what, err)
		}
	}
	_, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: aesAttrs()})
	refused("CreateKey", err)
	_, err = c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/full"), KeyArn: aws.String(acked[1])})
	refused("CreateAlias", err)
	_, err = c.UpdateAlias(ctx, &pc.UpdateAliasInput{AliasName: aws.String("alias/disk"), KeyArn: aws.String(acked[1])})
	refused("UpdateAlias", err)
	_, err = c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: aws.String(acked[0]), Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	refused("TagResource", err)
	_, err = c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(acked[0])})
	refused("StopKeyUsage", err)
	_, err = c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(acked[0])})
	refused("DeleteKey", err)
	// An online ceremony step (through the admin socket, as payhsm
	// ceremony rotate and sync send them) is refused before it starts;
	// verifying the store (a read, also through the admin socket) is served.
	if _, err := admin.Call(filepath.Join(dir, "admin.sock"), &admin.Request{Op: admin.OpKRDRequest}); err == nil || !strings.Contains(err.Error(), "refusing writes") {
		t.Errorf("online ceremony step below the reserve: %v", err)
	}
	if code, failures, out := verifyCLI(t, dir); code != 0 || len(failures) != 0 {
		t.Errorf("keystore verify below the reserve: exit %d %v\n%s", code, failures, out)
	}
	// Reads, the data plane and every host command go on.
	for _, id := range acked {
		if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(id)}); err != nil {
			t.Errorf("GetKey below the reserve: %v", err)
		}
	}
	if out, err := c.ListKeys(ctx, &pc.ListKeysInput{}); err != nil || len(out.Keys) == 0 {
		t.Errorf("ListKeys below the reserve: %v", err)
	}
	if out, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/disk")}); err != nil || aws.ToString(out.Alias.KeyArn) != acked[0] {
		t.Errorf("GetAlias below the reserve: %v", err)
	}
	dp.check(t, d)
	transcripts.replay(t, d)
	// Even with not a byte left, nothing goes down.
	last := fill(t, mnt, 0)
	_, err = c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: aesAttrs()})
	refused("CreateKey on a disk with no space at all", err)
	t.Logf("CreateKey below the reserve: %v", err)
	dp.check(t, d)
	if got := hostSend(t, d.hostAddr, "0000NC"); !strings.HasPrefix(got, "0000ND00") {
		t.Errorf("NC on a disk with no space at all: %q", got)
	}
	check(t, os.Remove(last))
	if n := strings.Count(d.logs.String(), "below its free-space reserve"); n != 1 {
		t.Errorf("%d log lines about the reserve, want 1 (once, when it was crossed)", n)
	}

	// Space freed: writes resume, without a restart.
	check(t, os.Remove(filler))
	acked = append(acked, createAESKey(t, c))
	if _, err := c.UpdateAlias(ctx, &pc.UpdateAliasInput{AliasName: aws.String("alias/disk"), KeyArn: aws.String(acked[1])}); err != nil {
		t.Errorf("UpdateAlias once space is freed: %v", err)
	}
	if !strings.Contains(d.logs.String(), "writes resumed") {
		t.Errorf("no log line saying writes resumed")
	}
	d.stop()

	// A start on the full disk: one clear line, a non-zero exit, no loop.
	filler = fill(t, mnt, reserve/2)
	cmd := exec.Command(binPath, args...)
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("start on a full disk: %v, want a non-zero exit\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if strings.Count(out.String(), "refusing to start") != 1 || len(lines) > 2 || time.Since(began) > 10*time.Second {
		t.Errorf("start on a full disk logged %d lines in %v, want one saying it refuses to start:\n%s", len(lines), time.Since(began), out.String())
	}
	t.Logf("start on a full disk: %s", lines[len(lines)-1])

	// Nothing acknowledged is lost.
	check(t, os.Remove(filler))
	d = start()
	c = d.client()
	for _, id := range acked {
		if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(id)}); err != nil {
			t.Errorf("acknowledged key %s after the restart: %v", id, err)
		}
	}
	if out, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/disk")}); err != nil || aws.ToString(out.Alias.KeyArn) != acked[1] {
		t.Errorf("alias after the restart: %v", err)
	}
}

// mountSmallFS mounts a tmpfs of size bytes for the test. Mounting needs
// root (or CAP_SYS_ADMIN); without it the test is skipped, unless CI is set.
func mountSmallFS(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot mount a %d-byte tmpfs for the full-disk test: %v", size, err)
		}
		t.Skipf("skipped: cannot mount a %d-byte tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): %v", size, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file on mnt that leaves about leave bytes free, and returns its path.
func fill(t *testing.T, mnt string, leave uint64) string {
	t.Helper()
	var st unix.Statfs_t
	check(t, unix.Statfs(mnt, &st))
	avail := st.Bavail * uint64(st.Bsize)
	if avail <= leave {
		t.Fatalf("only %d bytes free, cannot leave %d", avail, leave)
	}
	path := filepath.Join(mnt, fmt.Sprintf("filler-%d", time.Now().UnixNano()))
	f, err := os.Create(path)
	check(t, err)
	defer closeT(t, f)
	check(t, unix.Fallocate(int(f.Fd()), 0, 0, int64(avail-leave)))
	return path
}

func aesAttrs() *types.KeyAttributes {
	return &types.KeyAttributes{KeyAlgorithm: types.KeyAlgorithmAes128, KeyClass: types.KeyClassSymmetricKey,
		KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
}

// createAESKey creates an AES key and returns its ARN (acknowledged).
func createAESKey(t *testing.T, c *pc.Client) string {
	t.Helper()
	return aws.ToString(createKey(t, c, aesAttrs(), true).KeyArn)
}

// dataPlaneKeys are known keys the data-plane checks use.
type dataPlaneKeys struct{ aes, tdes, mac, cvk string }

// check runs the data-plane operations on known vectors: EncryptData,
// DecryptData, ReEncryptData, GenerateMac, VerifyMac,
// GenerateCardValidationData and VerifyCardValidationData.
func (k dataPlaneKeys) check(t *testing.T, d *daemon) {
	t.Helper()
	keyPath := func(arn, verb string) string { return "/keys/" + url.PathEscape(arn) + "/" + verb }
	// NIST SP 800-38A F.2.1 CBC-AES128.encrypt (first two blocks).
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
	const ct = "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2"
	symCBC := map[string]any{"Symmetric": map[string]any{"Mode": "CBC", "InitializationVector": "000102030405060708090A0B0C0D0E0F"}}
	ecb := map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}
	if st, body, et := d.dataCall(t, keyPath(k.aes, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": symCBC}); st != 200 || body["CipherText"] != ct {
		t.Errorf("EncryptData: %d %s %v", st, et, body)
	}
	if st, body, et := d.dataCall(t, keyPath(k.aes, "decrypt"), map[string]any{"CipherText": ct, "DecryptionAttributes": symCBC}); st != 200 || body["PlainText"] != pt {
		t.Errorf("DecryptData: %d %s %v", st, et, body)
	}
	st, body, et := d.dataCall(t, keyPath(k.aes, "reencrypt"), map[string]any{"CipherText": ct, "OutgoingKeyIdentifier": k.tdes,
		"IncomingEncryptionAttributes": symCBC, "OutgoingEncryptionAttributes": ecb})
	if st != 200 {
		t.Errorf("ReEncryptData: %d %s %v", st, et, body)
	} else if st, back, et := d.dataCall(t, keyPath(k.tdes, "decrypt"), map[string]any{"CipherText": body["CipherText"], "DecryptionAttributes": ecb}); st != 200 || back["PlainText"] != pt {
		t.Errorf("decrypt after ReEncryptData: %d %s %v", st, et, back)
	}
	// ISO 9797-1 algorithm 3, padding method 1 (knovichikhin/pyemv tests/test_mac.py).
	const msg = "68656c6c6f20776f726c64" // "hello world"
	alg3 := map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}
	if st, body, et := d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": k.mac, "MessageData": msg, "GenerationAttributes": alg3}); st != 200 || body["Mac"] != "78DA3D3DEB48FD4D" {
		t.Errorf("GenerateMac: %d %s %v", st, et, body)
	}
	if st, body, et := d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": k.mac, "MessageData": msg, "Mac": "78DA3D3DEB48FD4D", "VerificationAttributes": alg3}); st != 200 {
		t.Errorf("VerifyMac: %d %s %v", st, et, body)
	}
	// CVV of PAN 4123456789012345, expiry 8701, service code 101 is 561
	// (protocol/hostcmd/testdata/card.txt, with its sources).
	if st, body, et := d.dataCall(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": k.cvk, "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}}); st != 200 || body["ValidationData"] != "561" {
		t.Errorf("GenerateCardValidationData: %d %s %v", st, et, body)
	}
	if st, body, et := d.dataCall(t, "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": k.cvk, "PrimaryAccountNumber": "4123456789012345",
		"VerificationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}},
		"ValidationData":         "561"}); st != 200 {
		t.Errorf("VerifyCardValidationData: %d %s %v", st, et, body)
	}
}

// transcriptSet replays the host-command transcripts of
// protocol/hostcmd/testdata, which cover every command.
type transcriptSet struct{ files []string }

// replayTranscripts imports the transcripts' keys through the AWS API and
// replays them once.
func replayTranscripts(t *testing.T, d *daemon, c *pc.Client) transcriptSet {
	t.Helper()
	files, err := filepath.Glob("../../protocol/hostcmd/testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	kk := newKnownKeys(t, c)
	importKey := func(k transcript.Key) {
		u, ok := keyspec.UsageFromTR31(k.Usage)
		m, err := keyspec.ModesFromTR31(k.Mode)
		if !ok || err != nil {
			t.Fatalf("key %s: usage %s, mode %c", k.Alias, k.Usage, k.Mode)
		}
		arn := kk.arn(types.KeyUsage(u), types.KeyAlgorithm(k.Algorithm), types.KeyModesOfUse{Encrypt: m.Encrypt, Decrypt: m.Decrypt,
			Wrap: m.Wrap, Unwrap: m.Unwrap, Generate: m.Generate, Sign: m.Sign, Verify: m.Verify, DeriveKey: m.DeriveKey,
			NoRestrictions: m.NoRestrictions}, k.Hex)
		if _, err := c.CreateAlias(context.Background(), &pc.CreateAliasInput{AliasName: aws.String(k.Alias), KeyArn: aws.String(arn)}); err != nil {
			t.Fatalf("alias %s: %v", k.Alias, err)
		}
	}
	for _, f := range files {
		transcript.Replay(t, f, importKey, func(msg string) string { return hostSend(t, d.hostAddr, msg) })
	}
	return transcriptSet{files: files}
}

// replay replays the transcripts again; their keys are in already.
func (s transcriptSet) replay(t *testing.T, d *daemon) {
	t.Helper()
	for _, f := range s.files {
		transcript.Replay(t, f, func(transcript.Key) {}, func(msg string) string { return hostSend(t, d.hostAddr, msg) })
	}
}
