package e2e

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

var arnRe = regexp.MustCompile(`^arn:aws:payment-cryptography:us-east-1:000000000000:key/[0-9a-z]{16}$`)

// guideKeys are the user guide's "Creating keys" examples (Managing keys → Creating keys).
var guideKeys = []struct {
	name      string
	in        pc.CreateKeyInput
	kcvAlg    types.KeyCheckValueAlgorithm
	kcvDigits int
}{
	{"3KEY TDES base derivation key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31B0BaseDerivationKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes3key,
		KeyModesOfUse: &types.KeyModesOfUse{NoRestrictions: true}}}, types.KeyCheckValueAlgorithmAnsiX924, 6},
	{"2KEY TDES CVV key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes2key,
		KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}}, types.KeyCheckValueAlgorithmAnsiX924, 6},
	{"HMAC key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31M7HmacKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmHmacSha512,
		KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}}, types.KeyCheckValueAlgorithmHmac, 6},
	{"AES-256 key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmAes256,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}}, types.KeyCheckValueAlgorithmCmac, 6},
	{"PIN encryption key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31P0PinEncryptionKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes3key,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}}, types.KeyCheckValueAlgorithmAnsiX924, 6},
	{"asymmetric RSA key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31D1AsymmetricKeyForDataEncryption, KeyClass: types.KeyClassAsymmetricKeyPair, KeyAlgorithm: types.KeyAlgorithmRsa2048,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}}, types.KeyCheckValueAlgorithmSha1, 8},
	{"PVV key", pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31V2VisaPinVerificationKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes3key,
		KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}}, types.KeyCheckValueAlgorithmAnsiX924, 6},
	{"asymmetric ECC key", pc.CreateKeyInput{Exportable: aws.Bool(true), DeriveKeyUsage: types.DeriveKeyUsageTr31K1KeyBlockProtectionKey,
		KeyAttributes: &types.KeyAttributes{
			KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair, KeyAlgorithm: types.KeyAlgorithmEccNistP256,
			KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}}, types.KeyCheckValueAlgorithmSha1, 8},
}

func TestManagingKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()

	arns := map[string]string{}
	kcvs := map[string]string{}
	for _, g := range guideKeys {
		in := g.in
		out, err := c.CreateKey(ctx, &in)
		if err != nil {
			t.Fatalf("%s: CreateKey: %v", g.name, err)
		}
		k := out.Key
		if !arnRe.MatchString(*k.KeyArn) {
			t.Errorf("%s: ARN %q", g.name, *k.KeyArn)
		}
		if k.KeyState != types.KeyStateCreateComplete || !*k.Enabled || !*k.Exportable || k.KeyOrigin != types.KeyOriginAwsPaymentCryptography {
			t.Errorf("%s: state %s enabled %v exportable %v origin %s", g.name, k.KeyState, *k.Enabled, *k.Exportable, k.KeyOrigin)
		}
		if k.KeyCheckValueAlgorithm != g.kcvAlg || len(*k.KeyCheckValue) != g.kcvDigits {
			t.Errorf("%s: KCV %q (%s), want %d digits of %s", g.name, *k.KeyCheckValue, k.KeyCheckValueAlgorithm, g.kcvDigits, g.kcvAlg)
		}
		if *k.KeyAttributes != *in.KeyAttributes && k.KeyAttributes.KeyUsage != in.KeyAttributes.KeyUsage {
			t.Errorf("%s: attributes changed", g.name)
		}
		if *k.KeyAttributes.KeyModesOfUse != *in.KeyAttributes.KeyModesOfUse {
			t.Errorf("%s: modes %+v, want %+v", g.name, *k.KeyAttributes.KeyModesOfUse, *in.KeyAttributes.KeyModesOfUse)
		}
		if k.CreateTimestamp == nil || k.UsageStartTimestamp == nil || time.Since(*k.CreateTimestamp) > time.Minute {
			t.Errorf("%s: timestamps %v %v", g.name, k.CreateTimestamp, k.UsageStartTimestamp)
		}
		if in.DeriveKeyUsage != "" && k.DeriveKeyUsage != in.DeriveKeyUsage {
			t.Errorf("%s: DeriveKeyUsage %q", g.name, k.DeriveKeyUsage)
		}
		arns[g.name], kcvs[g.name] = *k.KeyArn, *k.KeyCheckValue

		got, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: k.KeyArn})
		if err != nil || *got.Key.KeyCheckValue != *k.KeyCheckValue {
			t.Fatalf("%s: GetKey: %v", g.name, err)
		}
	}

	// Asymmetric key pairs have a certificate chained to the profile CA.
	cert, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: aws.String(arns["asymmetric RSA key"])})
	if err != nil {
		t.Fatalf("GetPublicKeyCertificate: %v", err)
	}
	verifyChain(t, *cert.KeyCertificate, *cert.KeyCertificateChain)
	if _, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: aws.String(arns["PIN encryption key"])}); !isErr[*types.ValidationException](err) {
		t.Errorf("GetPublicKeyCertificate of a symmetric key: %v", err)
	}

	// List, and page with MaxResults=1 through every key exactly once.
	all, err := c.ListKeys(ctx, &pc.ListKeysInput{})
	if err != nil || len(all.Keys) != len(guideKeys) || all.NextToken != nil {
		t.Fatalf("ListKeys: %d keys, next %v, err %v", len(all.Keys), all.NextToken, err)
	}
	seen := map[string]bool{}
	p := pc.NewListKeysPaginator(c, &pc.ListKeysInput{MaxResults: aws.Int32(1)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListKeys page: %v", err)
		}
		pages++
		if len(out.Keys) != 1 {
			t.Fatalf("page of %d keys", len(out.Keys))
		}
		if seen[*out.Keys[0].KeyArn] {
			t.Fatalf("key %s listed twice", *out.Keys[0].KeyArn)
		}
		seen[*out.Keys[0].KeyArn] = true
	}
	if pages != len(guideKeys) {
		t.Errorf("%d pages, want %d", pages, len(guideKeys))
	}
	if _, err := c.ListKeys(ctx, &pc.ListKeysInput{NextToken: aws.String("garbage")}); !isErr[*types.ValidationException](err) {
		t.Errorf("bad NextToken: %v", err)
	}

	// Stop and start key usage.
	pek := arns["PIN encryption key"]
	stop, err := c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: &pek})
	if err != nil || *stop.Key.Enabled || stop.Key.UsageStopTimestamp == nil || stop.Key.UsageStartTimestamp != nil {
		t.Fatalf("StopKeyUsage: %+v %v", stop, err)
	}
	start, err := c.StartKeyUsage(ctx, &pc.StartKeyUsageInput{KeyIdentifier: &pek})
	if err != nil || !*start.Key.Enabled || start.Key.UsageStartTimestamp == nil || start.Key.UsageStopTimestamp != nil {
		t.Fatalf("StartKeyUsage: %+v %v", start, err)
	}

	// Aliases: create, get, resolve a key through one, update, list by key, delete.
	cvk := arns["2KEY TDES CVV key"]
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/sampleAlias1"), KeyArn: &pek}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/sampleAlias1"), KeyArn: &cvk}); !isErr[*types.ConflictException](err) {
		t.Errorf("duplicate CreateAlias: %v", err)
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/unbound")}); err != nil {
		t.Fatalf("CreateAlias without key: %v", err)
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("bad-name")}); !isErr[*types.ValidationException](err) {
		t.Errorf("CreateAlias with a bad name: %v", err)
	}
	byAlias, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("alias/sampleAlias1")})
	if err != nil || *byAlias.Key.KeyArn != pek {
		t.Fatalf("GetKey by alias: %v", err)
	}
	byAliasARN, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("arn:aws:payment-cryptography:us-east-1:000000000000:alias/sampleAlias1")})
	if err != nil || *byAliasARN.Key.KeyArn != pek {
		t.Fatalf("GetKey by alias ARN: %v", err)
	}
	if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("alias/unbound")}); !isErr[*types.ResourceNotFoundException](err) {
		t.Errorf("GetKey by unbound alias: %v", err)
	}
	up, err := c.UpdateAlias(ctx, &pc.UpdateAliasInput{AliasName: aws.String("alias/sampleAlias1"), KeyArn: &cvk})
	if err != nil || *up.Alias.KeyArn != cvk {
		t.Fatalf("UpdateAlias: %v", err)
	}
	la, err := c.ListAliases(ctx, &pc.ListAliasesInput{KeyArn: &cvk})
	if err != nil || len(la.Aliases) != 1 || *la.Aliases[0].AliasName != "alias/sampleAlias1" {
		t.Fatalf("ListAliases by key: %+v %v", la, err)
	}
	ga, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/unbound")})
	if err != nil || ga.Alias.KeyArn != nil {
		t.Fatalf("GetAlias unbound: %+v %v", ga, err)
	}
	if _, err := c.DeleteAlias(ctx, &pc.DeleteAliasInput{AliasName: aws.String("alias/unbound")}); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if _, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/unbound")}); !isErr[*types.ResourceNotFoundException](err) {
		t.Errorf("GetAlias after delete: %v", err)
	}

	// Tags: add, replace, list with paging, remove.
	if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: &cvk, Tags: []types.Tag{
		{Key: aws.String("BIN"), Value: aws.String("20151120")}, {Key: aws.String("Project"), Value: aws.String("Production")}}}); err != nil {
		t.Fatalf("TagResource: %v", err)
	}
	if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: &cvk, Tags: []types.Tag{{Key: aws.String("Project"), Value: aws.String("Test")}}}); err != nil {
		t.Fatalf("TagResource replace: %v", err)
	}
	tp := pc.NewListTagsForResourcePaginator(c, &pc.ListTagsForResourceInput{ResourceArn: &cvk, MaxResults: aws.Int32(1)})
	gotTags := map[string]string{}
	for tp.HasMorePages() {
		out, err := tp.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListTagsForResource: %v", err)
		}
		for _, tg := range out.Tags {
			gotTags[*tg.Key] = *tg.Value
		}
	}
	if len(gotTags) != 2 || gotTags["Project"] != "Test" || gotTags["BIN"] != "20151120" {
		t.Errorf("tags %v", gotTags)
	}
	if _, err := c.UntagResource(ctx, &pc.UntagResourceInput{ResourceArn: &cvk, TagKeys: []string{"BIN"}}); err != nil {
		t.Fatalf("UntagResource: %v", err)
	}

	// Delete and restore: default 7 days, state DELETE_PENDING, disabled; restore keeps it disabled.
	pvv := arns["PVV key"]
	del, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: &pvv})
	if err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if del.Key.KeyState != types.KeyStateDeletePending || *del.Key.Enabled || del.Key.DeletePendingTimestamp == nil {
		t.Fatalf("DeleteKey: %+v", del.Key)
	}
	if days := time.Until(*del.Key.DeletePendingTimestamp).Hours() / 24; days < 6.9 || days > 7.1 {
		t.Errorf("deletion in %.2f days, want 7", days)
	}
	if _, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: &pvv}); !isErr[*types.ConflictException](err) {
		t.Errorf("second DeleteKey: %v", err)
	}
	if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: &pvv, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}); !isErr[*types.ConflictException](err) {
		t.Errorf("tagging a key pending deletion: %v", err)
	}
	pending, err := c.ListKeys(ctx, &pc.ListKeysInput{KeyState: types.KeyStateDeletePending})
	if err != nil || len(pending.Keys) != 1 || *pending.Keys[0].KeyArn != pvv {
		t.Fatalf("ListKeys DELETE_PENDING: %+v %v", pending, err)
	}
	res, err := c.RestoreKey(ctx, &pc.RestoreKeyInput{KeyIdentifier: &pvv})
	if err != nil || res.Key.KeyState != types.KeyStateCreateComplete || res.Key.DeletePendingTimestamp != nil || *res.Key.Enabled {
		t.Fatalf("RestoreKey: %+v %v", res, err)
	}
	for _, days := range []int32{2, 181} {
		if _, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: &pvv, DeleteKeyInDays: aws.Int32(days)}); !isErr[*types.ValidationException](err) {
			t.Errorf("DeleteKeyInDays %d: %v", days, err)
		}
	}
	if _, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: &pvv, DeleteKeyInDays: aws.Int32(3)}); err != nil {
		t.Fatalf("DeleteKey in 3 days: %v", err)
	}
	if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String("arn:aws:payment-cryptography:us-east-1:000000000000:key/aaaaaaaaaaaaaaaa")}); !isErr[*types.ResourceNotFoundException](err) {
		t.Errorf("GetKey of an unknown key: %v", err)
	}

	// A restart keeps every key, alias and tag.
	d.stop()
	d2 := startDaemon(t, dir)
	c2 := d2.client()
	after, err := c2.ListKeys(ctx, &pc.ListKeysInput{})
	if err != nil || len(after.Keys) != len(guideKeys) {
		t.Fatalf("after restart: %d keys, %v", len(after.Keys), err)
	}
	for _, k := range after.Keys {
		found := false
		for name, arn := range arns {
			if arn == *k.KeyArn {
				found = true
				if kcvs[name] != *k.KeyCheckValue {
					t.Errorf("%s: KCV %s after restart, was %s", name, *k.KeyCheckValue, kcvs[name])
				}
			}
		}
		if !found {
			t.Errorf("unknown key %s after restart", *k.KeyArn)
		}
	}
	if a, err := c2.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/sampleAlias1")}); err != nil || *a.Alias.KeyArn != cvk {
		t.Errorf("alias after restart: %v", err)
	}
	if tg, err := c2.ListTagsForResource(ctx, &pc.ListTagsForResourceInput{ResourceArn: &cvk}); err != nil || len(tg.Tags) != 1 || *tg.Tags[0].Value != "Test" {
		t.Errorf("tags after restart: %+v %v", tg, err)
	}
	if k, err := c2.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: &pvv}); err != nil || k.Key.KeyState != types.KeyStateDeletePending {
		t.Errorf("pending deletion after restart: %v", err)
	}
}

func isErr[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
