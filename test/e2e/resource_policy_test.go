package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestResourcePolicyCrossAccount is issue 17's resource-policy acceptance on
// the real daemon: the key's owner puts, gets and deletes a resource-based
// policy with the AWS CLI (a public policy is PublicPolicyException, a
// malformed one a ValidationException naming the problem); a principal of
// another account then uses the key for exactly what both its identity
// policy and the resource policy allow, for the operations the model lets
// cross accounts, on the API and on the host port; an explicit Deny in the
// resource policy beats its identity Allow; a key without a grant, and a key
// that does not exist, answer alike; denials reach the audit log with the
// principal's ARN and the deciding statement.
func TestResourcePolicyCrossAccount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemonArgs(t, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--host-principal", "partnerhost")
	d.dir = dir
	d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
	ctx := context.Background()
	admin := d.client()
	newKey := func() string {
		k, err := admin.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
			KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyClass: types.KeyClassSymmetricKey,
			KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return *k.Key.KeyArn
	}
	shared, private := newKey(), newKey()
	missing := shared[:len(shared)-16] + "zzzzzzzzzzzzzzzz"

	// The partner's principals (account 444455556666): identity policies
	// that allow much on the appliance account's keys.
	partnerID := `{"Version":"2012-10-17","Statement":[{"Sid":"Appliance","Effect":"Allow","Action":"payment-cryptography:*",
		"Resource":"arn:aws:payment-cryptography:*:000000000000:key/*"}]}`
	out := principalsCmd(t, dir, "add", "partner", "--principal-account", "444455556666", "--access-key", "--policy", writePolicy(t, dir, "partner", partnerID))
	creds, _ := out["credentials"].(map[string]any)
	p := *d
	p.keyID, _ = creds["AccessKeyId"].(string)
	p.secret, _ = creds["SecretAccessKey"].(string)
	if p.keyID == "" {
		t.Fatalf("add --access-key printed no credentials: %v", out)
	}
	principalsCmd(t, dir, "add", "partnerhost", "--principal-account", "444455556666", "--policy", writePolicy(t, dir, "partnerhost", partnerID))
	pcl := p.client()
	call := d.hostCaller(t)
	const pt = "0123456789ABCDEF"
	ecb := map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}
	encrypt := func(key string) (int, string) {
		st, _, et := p.dataCall(t, "/keys/"+url.PathEscape(key)+"/encrypt", map[string]any{"PlainText": pt, "EncryptionAttributes": ecb})
		return st, et
	}

	// No resource policy: another account's principal gets nothing.
	if code := apiError(second(pcl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(shared)}))); code != "AccessDeniedException" {
		t.Errorf("GetKey before the policy: %s", code)
	}
	if st, et := encrypt(shared); st != 403 || et != "AccessDeniedException" {
		t.Errorf("EncryptData before the policy: %d %s", st, et)
	}
	if r := call("M0", "001100B@"+shared+";0010"+pt); r.Error != "12" {
		t.Errorf("host M0 before the policy: %s, want 12", r.Error)
	}

	// The owner manages the policy with the AWS CLI (or the SDK without it).
	cli := func(args ...string) (map[string]any, string) {
		if _, err := exec.LookPath("aws"); err != nil {
			return sdkPolicy(t, admin, args...)
		}
		cmd := exec.Command("aws", append([]string{"payment-cryptography", "--endpoint-url", d.httpURL, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+d.keyID, "AWS_SECRET_ACCESS_KEY="+d.secret, "AWS_DEFAULT_REGION=us-east-1",
			"AWS_MAX_ATTEMPTS=1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, stderr.String()
		}
		var m map[string]any
		_ = json.Unmarshal(stdout.Bytes(), &m)
		return m, ""
	}
	if _, e := cli("put-resource-policy", "--resource-arn", shared, "--policy",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"payment-cryptography:EncryptData","Resource":"*"}]}`); !strings.Contains(e, "PublicPolicyException") {
		t.Errorf("public policy: %q, want PublicPolicyException", e)
	}
	if _, e := cli("put-resource-policy", "--resource-arn", shared, "--policy",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"payment-cryptography:Encrypt","Resource":"*"}]}`); !strings.Contains(e, "ValidationException") ||
		!strings.Contains(e, "Statement[0].Action[0]") || !strings.Contains(e, "no Payment Cryptography operation is called Encrypt") {
		t.Errorf("malformed policy: %q, want a ValidationException naming Statement[0].Action[0]", e)
	}
	if _, e := cli("get-resource-policy", "--resource-arn", shared); !strings.Contains(e, "ResourceNotFoundException") {
		t.Errorf("get before put: %q", e)
	}
	policy := `{"Version":"2012-10-17","Statement":[
		{"Sid":"PartnerUse","Effect":"Allow","Principal":{"AWS":"444455556666"},
		 "Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData","payment-cryptography:GetKey","payment-cryptography:GetResourcePolicy"],"Resource":"*"},
		{"Sid":"NoPartnerDecrypt","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::444455556666:user/partner"},"Action":"payment-cryptography:DecryptData","Resource":"*"}]}`
	if m, e := cli("put-resource-policy", "--resource-arn", shared, "--policy", policy); e != "" || m["ResourceArn"] != shared || m["Policy"] != policy {
		t.Fatalf("put-resource-policy: %v %s", m, e)
	}
	if m, e := cli("get-resource-policy", "--resource-arn", shared); e != "" || m["ResourceArn"] != shared || m["Policy"] != policy {
		t.Fatalf("get-resource-policy: %v %s", m, e)
	}

	// Granted and usable across accounts: GetKey, EncryptData, on the
	// API and the host port.
	if _, err := pcl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(shared)}); err != nil {
		t.Errorf("GetKey with the policy: %v", err)
	}
	if st, et := encrypt(shared); st != 200 {
		t.Errorf("EncryptData with the policy: %d %s", st, et)
	}
	if r := call("M0", "001100B@"+shared+";0010"+pt); r.Error != "00" {
		t.Errorf("host M0 with the policy: %s, want 00", r.Error)
	}
	// Refused: the resource policy's explicit Deny (for the SigV4
	// principal, not the host one), an operation that cannot cross
	// accounts though both policies name it, operations on no key, a key
	// without a grant and one that does not exist (alike).
	st, body, et := p.dataCall(t, "/keys/"+url.PathEscape(shared)+"/decrypt", map[string]any{"CipherText": pt, "DecryptionAttributes": ecb})
	if msg, _ := body["Message"].(string); st != 403 || et != "AccessDeniedException" || !strings.Contains(msg, "arn:aws:iam::444455556666:user/partner") ||
		!strings.Contains(msg, "explicit deny in a resource-based policy") {
		t.Errorf("DecryptData under the resource Deny: %d %s %v", st, et, body)
	}
	if r := call("M2", "001100B@"+shared+";0010"+pt); r.Error != "00" {
		t.Errorf("host M2 (the Deny names the SigV4 user only): %s, want 00", r.Error)
	}
	for name, err := range map[string]error{
		"GetResourcePolicy (not cross-account)": second(pcl.GetResourcePolicy(ctx, &pc.GetResourcePolicyInput{ResourceArn: aws.String(shared)})),
		"ListKeys":                              second(pcl.ListKeys(ctx, &pc.ListKeysInput{})),
		"GetKey without a grant":                second(pcl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(private)})),
		"GetKey of a missing key":               second(pcl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(missing)})),
		"DeleteResourcePolicy":                  second(pcl.DeleteResourcePolicy(ctx, &pc.DeleteResourcePolicyInput{ResourceArn: aws.String(shared)})),
	} {
		if code := apiError(err); code != "AccessDeniedException" {
			t.Errorf("%s: %s, want AccessDeniedException", name, code)
		}
	}
	a, b := call("M0", "001100B@"+private+";0010"+pt), call("M0", "001100B@"+missing+";0010"+pt)
	if a.Error != "12" || a.Error != b.Error {
		t.Errorf("host M0 on a key without a grant %s vs a missing key %s, want 12 for both", a.Error, b.Error)
	}

	// Deleted: the grant is gone at once.
	if _, e := cli("delete-resource-policy", "--resource-arn", shared); e != "" {
		t.Fatalf("delete-resource-policy: %s", e)
	}
	if _, e := cli("get-resource-policy", "--resource-arn", shared); !strings.Contains(e, "ResourceNotFoundException") {
		t.Errorf("get after delete: %q", e)
	}
	if code := apiError(second(pcl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(shared)}))); code != "AccessDeniedException" {
		t.Errorf("GetKey after delete: %s", code)
	}
	if r := call("M0", "001100B@"+shared+";0010"+pt); r.Error != "12" {
		t.Errorf("host M0 after delete: %s, want 12", r.Error)
	}

	d.stop()
	log, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	check(t, err)
	for _, want := range []string{"arn:aws:iam::444455556666:user/partner", "ResourcePolicy/NoPartnerDecrypt",
		"no resource-based policy grants cross-account access", "cross-account use of this operation is not supported"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the audit log has no denial with %q", want)
		}
	}
}

// sdkPolicy stands in for the AWS CLI's three resource-policy commands.
func sdkPolicy(t *testing.T, c *pc.Client, args ...string) (map[string]any, string) {
	t.Helper()
	ctx := context.Background()
	arg := func(name string) *string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == name {
				return aws.String(args[i+1])
			}
		}
		return nil
	}
	switch args[0] {
	case "put-resource-policy":
		o, err := c.PutResourcePolicy(ctx, &pc.PutResourcePolicyInput{ResourceArn: arg("--resource-arn"), Policy: arg("--policy")})
		if err != nil {
			return nil, apiError(err) + ": " + err.Error()
		}
		return map[string]any{"ResourceArn": *o.ResourceArn, "Policy": *o.Policy}, ""
	case "get-resource-policy":
		o, err := c.GetResourcePolicy(ctx, &pc.GetResourcePolicyInput{ResourceArn: arg("--resource-arn")})
		if err != nil {
			return nil, apiError(err) + ": " + err.Error()
		}
		return map[string]any{"ResourceArn": *o.ResourceArn, "Policy": *o.Policy}, ""
	case "delete-resource-policy":
		if _, err := c.DeleteResourcePolicy(ctx, &pc.DeleteResourcePolicyInput{ResourceArn: arg("--resource-arn")}); err != nil {
			return nil, apiError(err) + ": " + err.Error()
		}
		return map[string]any{}, ""
	}
	t.Fatalf("sdkPolicy: %v", args)
	return nil, ""
}
