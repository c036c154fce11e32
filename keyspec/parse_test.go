package keyspec

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseEnums(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		parse func(string) (string, bool)
		model []string
	}{
		{"KeyUsage", func(s string) (string, bool) { v, ok := ParseKeyUsage(s); return string(v), ok }, modelUsages},
		{"DeriveKeyUsage", func(s string) (string, bool) { v, ok := ParseDeriveKeyUsage(s); return string(v), ok }, modelDeriveKeyUsages},
		{"KeyAlgorithm", func(s string) (string, bool) { v, ok := ParseAlgorithm(s); return string(v), ok }, modelAlgorithms},
		{"KeyClass", func(s string) (string, bool) { v, ok := ParseClass(s); return string(v), ok }, modelClasses},
		{"KeyCheckValueAlgorithm", func(s string) (string, bool) { v, ok := ParseKCVAlgorithm(s); return string(v), ok }, modelKCVAlgorithms},
		{"KeyExportability", func(s string) (string, bool) { v, ok := ParseExportability(s); return string(v), ok }, modelExportability},
	} {
		for _, s := range c.model {
			if v, ok := c.parse(s); !ok || v != s {
				t.Errorf("%s: parse(%q) = %q, %v", c.name, s, v, ok)
			}
			for _, bad := range []string{strings.ToLower(s), " " + s, s + " ", s + "\x00", s[:len(s)-1]} {
				if v, ok := c.parse(bad); ok {
					t.Errorf("%s: parse(%q) = %q", c.name, bad, v)
				}
			}
		}
		if _, ok := c.parse(""); ok {
			t.Errorf("%s: empty string accepted", c.name)
		}
	}
	if got := KeyUsages(); len(got) != len(modelUsages) {
		t.Errorf("KeyUsages() has %d values", len(got))
	}
	if got := Algorithms(); len(got) != len(modelAlgorithms) {
		t.Errorf("Algorithms() has %d values", len(got))
	}
	// The returned slices are copies.
	KeyUsages()[0] = "x"
	if KeyUsages()[0] == "x" {
		t.Error("KeyUsages returns the package's slice")
	}
}

// The transcribed enums match the model file itself (the official model,
// committed beside its generator in tools/apigen/testdata).
func TestEnumsMatchModel(t *testing.T) {
	t.Parallel()
	const path = "../tools/apigen/testdata/payment-cryptography-2021-09-14.json"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var model struct {
		Shapes map[string]struct {
			Enum []string `json:"enum"`
		} `json:"shapes"`
	}
	if err := json.Unmarshal(data, &model); err != nil {
		t.Fatal(err)
	}
	for shape, want := range map[string][]string{
		"KeyUsage": modelUsages, "DeriveKeyUsage": modelDeriveKeyUsages, "KeyAlgorithm": modelAlgorithms,
		"KeyClass": modelClasses, "KeyCheckValueAlgorithm": modelKCVAlgorithms, "KeyExportability": modelExportability,
	} {
		got := model.Shapes[shape].Enum
		if !slices.Equal(got, want) {
			t.Errorf("model %s = %v, transcription %v", shape, got, want)
		}
	}
}
