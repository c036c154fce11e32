package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	"github.com/aws/smithy-go"
)

// principalsCmd runs payhsm principals against the daemon in dir and
// decodes its JSON answer.
func principalsCmd(t *testing.T, dir string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(binPath, append(append([]string{"principals"}, args...), "--dev", "--data-dir", dir)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("payhsm principals %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("payhsm principals %v: %v\n%s", args, err, out)
	}
	return m
}

func writePolicy(t *testing.T, dir, name, doc string) string {
	t.Helper()
	p := filepath.Join(dir, name+".json")
	check(t, os.WriteFile(p, []byte(doc), 0o600))
	return name + "=" + p
}

func apiError(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// TestAccessControl is issue 17's acceptance on the real daemon: a host
// client whose principal has no access to a key created through the API
// cannot use it by @alias or @ARN and cannot tell whether an alias exists;
// SigV4 principals are allowed and refused as their policies say, an
// explicit Deny beating an Allow; the --dev default principal keeps full
// power; denials reach the audit log.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemonArgs(t, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--host-principal", "switch")
	d.dir = dir
	d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
	ctx := context.Background()
	admin := d.client()
	newKey := func(alias string) string {
		k, err := admin.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
			KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyClass: types.KeyClassSymmetricKey,
			KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String(alias), KeyArn: k.Key.KeyArn}); err != nil {
			t.Fatal(err)
		}
		return *k.Key.KeyArn
	}
	switchKey := newKey("alias/switch-zek")
	issuerKey := newKey("alias/issuer-secret")

	// The host port's principal before it exists: everything keyed is refused.
	call := d.hostCaller(t)
	if r := call("M0", "001100B@alias/switch-zek;00100123456789ABCDEF"); r.Error != "12" {
		t.Errorf("M0 before the principal exists: %s, want 12", r.Error)
	}
	principalsCmd(t, dir, "add", "switch", "--policy", writePolicy(t, dir, "switch", `{"Version":"2012-10-17","Statement":[
		{"Sid":"SwitchKeys","Effect":"Allow","Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData","payment-cryptography:GetKey"],
		 "Resource":"arn:aws:payment-cryptography:us-east-1:000000000000:alias/switch-*"}]}`))
	const pt = "0123456789ABCDEF"
	for _, tc := range []struct{ key, want string }{
		{"@alias/switch-zek;", "00"},
		{"@alias/issuer-secret;", "12"},
		{"@" + issuerKey + ";", "12"},
		{"@" + switchKey + ";", "12"}, // granted by alias only
		{"@alias/no-such-alias;", "12"},
	} {
		if r := call("M0", "001100B"+tc.key+"0010"+pt); r.Error != tc.want {
			t.Errorf("M0 %s: %s, want %s", tc.key, r.Error, tc.want)
		}
	}
	// The M2 of the issue: decrypt under the issuer's key by alias.
	if r := call("M2", "001100B@alias/issuer-secret;0010"+pt); r.Error != "12" {
		t.Errorf("M2 with another application's key: %s, want 12", r.Error)
	}
	// BU cannot tell an alias it may not use from one that does not exist.
	a := call("BU", "021@alias/issuer-secret;")
	b := call("BU", "021@alias/no-such-alias;")
	if a.Error != "12" || a.Error != b.Error || string(a.Fields) != string(b.Fields) {
		t.Errorf("BU existing %s %q vs missing %s %q", a.Error, a.Fields, b.Error, b.Fields)
	}
	// A0 (CreateKey) is not granted: 17.
	if r := call("A0", "0FFFS#D0T2B00N00"); r.Error != "17" {
		t.Errorf("A0: %s, want 17", r.Error)
	}

	// A SigV4 principal: everything on its own key, except DeleteKey.
	out := principalsCmd(t, dir, "add", "issuer", "--access-key", "--policy", writePolicy(t, dir, "issuer", `{"Version":"2012-10-17","Statement":[
		{"Sid":"OwnKey","Effect":"Allow","Action":"payment-cryptography:*","Resource":"`+issuerKey+`"},
		{"Sid":"NeverDelete","Effect":"Deny","Action":"payment-cryptography:DeleteKey","Resource":"*"}]}`))
	creds, _ := out["credentials"].(map[string]any)
	akid, _ := creds["AccessKeyId"].(string)
	secret, _ := creds["SecretAccessKey"].(string)
	if akid == "" || secret == "" {
		t.Fatalf("add --access-key printed no credentials: %v", out)
	}
	iss := *d
	iss.keyID, iss.secret = akid, secret
	ic := iss.client()
	if _, err := ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(issuerKey)}); err != nil {
		t.Errorf("GetKey own key: %v", err)
	}
	if _, err := ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("alias/issuer-secret")}); err != nil {
		t.Errorf("GetKey own key by alias: %v", err)
	}
	for name, err := range map[string]error{
		"GetKey other key":          second(ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(switchKey)})),
		"GetKey other alias":        second(ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("alias/switch-zek")})),
		"GetKey missing alias":      second(ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("alias/no-such-alias")})),
		"ListKeys (Resource *)":     second(ic.ListKeys(ctx, &pc.ListKeysInput{})),
		"DeleteKey (explicit deny)": second(ic.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(issuerKey)})),
	} {
		if code := apiError(err); code != "AccessDeniedException" {
			t.Errorf("%s: %s, want AccessDeniedException", name, code)
		}
	}
	keyPath := func(arn, verb string) string { return "/keys/" + url.PathEscape(arn) + "/" + verb }
	ecb := map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}
	if st, body, et := iss.dataCall(t, keyPath(issuerKey, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": ecb}); st != 200 {
		t.Errorf("EncryptData own key: %d %s %v", st, et, body)
	}
	if st, body, et := iss.dataCall(t, keyPath(switchKey, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": ecb}); st != 403 || et != "AccessDeniedException" ||
		!strings.Contains(body["Message"].(string), "arn:aws:iam::000000000000:user/issuer is not authorized to perform: payment-cryptography:EncryptData") {
		t.Errorf("EncryptData other key: %d %s %v", st, et, body)
	}
	// The default principal of --dev keeps full power.
	if _, err := admin.ListKeys(ctx, &pc.ListKeysInput{}); err != nil {
		t.Errorf("default principal ListKeys: %v", err)
	}
	// Disabled: the key is no longer recognized.
	principalsCmd(t, dir, "disable", "issuer")
	if code := apiError(second(ic.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(issuerKey)}))); code != "UnrecognizedClientException" {
		t.Errorf("disabled principal: %s", code)
	}
	list := principalsCmd(t, dir, "list")
	if b, _ := json.Marshal(list); strings.Contains(string(b), secret) || !strings.Contains(string(b), `"Name":"switch"`) {
		t.Errorf("list: %s", b)
	}
	d.stop()
	log, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	check(t, err)
	if !strings.Contains(string(log), `"outcome":"denied"`) || !strings.Contains(string(log), "NeverDelete") {
		t.Errorf("the audit log holds no denial naming the deciding statement:\n%s", log)
	}
}

func second[T any](_ T, err error) error { return err }
