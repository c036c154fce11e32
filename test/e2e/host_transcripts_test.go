package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/ops/keyspec"
)

// TestHostTranscripts replays the host-command transcripts of
// protocol/hostcmd/testdata (every command's success path and documented
// error codes, each vector with its source; format in
// protocol/hostcmd/transcript_test.go) against the real daemon: the keys
// come in through the AWS SDK, the requests go over the host port.
func TestHostTranscripts(t *testing.T) {
	files, err := filepath.Glob("../../protocol/hostcmd/testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	d := startDaemon(t, t.TempDir())
	c := d.client()
	kk := newKnownKeys(t, c)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { replayTranscript(t, d, c, kk, f) })
	}
}

var transcriptHex = regexp.MustCompile(`\{([0-9A-Fa-f]*)\}`)

func replayTranscript(t *testing.T, d *daemon, c *pc.Client, kk *knownKeys, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", d.hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	prefix := "@alias/" + strings.ReplaceAll(filepath.Base(path), ".", "-") + "-"
	unbrace := func(s string) string {
		return transcriptHex.ReplaceAllStringFunc(s, func(m string) string {
			v, err := hex.DecodeString(m[1 : len(m)-1])
			if err != nil {
				t.Fatalf("bad hex segment %s", m)
			}
			return string(v)
		})
	}
	var last string
	for n, l := range strings.Split(string(b), "\n") {
		where := filepath.Base(path) + ":" + strconv.Itoa(n+1)
		if l == "" || l[0] == '#' {
			continue
		}
		switch l[0] {
		case 'k':
			fs := strings.Fields(l)
			if len(fs) != 6 {
				t.Fatalf("%s: key NAME USAGE ALGORITHM MODE HEX", where)
			}
			u, ok := keyspec.UsageFromTR31(fs[2])
			m, err := keyspec.ModesFromTR31(fs[4][0])
			if !ok || err != nil {
				t.Fatalf("%s: usage %s mode %s", where, fs[2], fs[4])
			}
			arn := kk.arn(types.KeyUsage(u), types.KeyAlgorithm(fs[3]), types.KeyModesOfUse{Encrypt: m.Encrypt, Decrypt: m.Decrypt,
				Wrap: m.Wrap, Unwrap: m.Unwrap, Generate: m.Generate, Sign: m.Sign, Verify: m.Verify, DeriveKey: m.DeriveKey,
				NoRestrictions: m.NoRestrictions}, fs[5])
			alias := prefix[1:] + fs[1]
			if _, err := c.CreateAlias(context.Background(), &pc.CreateAliasInput{AliasName: aws.String(alias), KeyArn: aws.String(arn)}); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case '>':
			msg := unbrace(strings.ReplaceAll(l[2:], "@alias/", prefix))
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var lb [2]byte
			if _, err := io.ReadFull(br, lb[:]); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			resp := make([]byte, binary.BigEndian.Uint16(lb[:]))
			if _, err := io.ReadFull(br, resp); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			last = string(resp)
		case '<':
			if want := unbrace(l[2:]); last != want {
				t.Errorf("%s: got %q, want %q", where, last, want)
			}
		case '~':
			if !regexp.MustCompile("^(?:" + l[2:] + ")$").MatchString(last) {
				t.Errorf("%s: got %q, want match of %s", where, last, l[2:])
			}
		default:
			t.Fatalf("%s: unknown line kind %q", where, l[0])
		}
	}
}
