package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/keyspec"
	"payhsm/protocol/hostcmd/transcript"
)

// TestHostTranscripts replays the host-command transcripts of
// protocol/hostcmd/testdata (every command's success path and documented
// error codes, each vector with its source) against the real daemon: the
// keys come in through the AWS SDK, the requests go over the host port.
func TestHostTranscripts(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../protocol/hostcmd/testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	d := startDaemon(t, t.TempDir())
	c := d.client()
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
		t.Run(filepath.Base(f), func(t *testing.T) {
			transcript.Replay(t, f, importKey, func(msg string) string { return hostSend(t, d.hostAddr, msg) })
		})
	}
}
