package appliance

import (
	"strings"
	"testing"
)

func TestReplicationConfigValidate(t *testing.T) {
	t.Parallel()
	fp := strings.Repeat("ab", 32)
	good := ReplicationConfig{Listen: "127.0.0.1:9441", TLSCert: "c.pem", TLSKey: "k.pem",
		Peers: []ReplicationPeer{{Region: "us-west-2", Endpoint: "10.0.0.2:9441", CertificateSHA256: fp}}}
	for _, c := range []struct {
		name string
		edit func(*ReplicationConfig)
		want string // "" = valid
	}{
		{"valid", func(*ReplicationConfig) {}, ""},
		{"off", func(r *ReplicationConfig) { *r = ReplicationConfig{} }, ""},
		{"no identity", func(r *ReplicationConfig) { r.TLSKey = "" }, "tlsCert and tlsKey are required"},
		{"bad listen", func(r *ReplicationConfig) { r.Listen = "9441" }, "replication.listen"},
		{"own region", func(r *ReplicationConfig) { r.Peers[0].Region = "us-east-1" }, "own region"},
		{"bad region", func(r *ReplicationConfig) { r.Peers[0].Region = "west" }, "must look like"},
		{"twice", func(r *ReplicationConfig) { r.Peers = append(r.Peers, r.Peers[0]) }, "listed twice"},
		{"short pin", func(r *ReplicationConfig) { r.Peers[0].CertificateSHA256 = "abcd" }, "certificateSha256"},
		{"bad endpoint", func(r *ReplicationConfig) { r.Peers[0].Endpoint = "host" }, "endpoint"},
		{"bad retry", func(r *ReplicationConfig) { r.RetryInterval = "soon" }, "retryInterval"},
	} {
		r := good
		r.Peers = append([]ReplicationPeer(nil), good.Peers...)
		c.edit(&r)
		errs := r.validate("us-east-1")
		switch {
		case c.want == "" && len(errs) > 0:
			t.Errorf("%s: %v", c.name, errs)
		case c.want != "" && (len(errs) == 0 || !strings.Contains(errs[0].Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, errs, c.want)
		}
	}
}
