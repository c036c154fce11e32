package hostcmd

import "testing"

// TestNONode: NO mode 02 names the fleet node that answered (length 2N and
// name); modes 00 and 01 keep payShield's layouts whatever the node.
func TestNONode(t *testing.T) {
	for _, tc := range []struct {
		node, msg, want string
	}{
		{"node-b", "0001NO02", "0001NP0006node-b"},
		{"", "0001NO02", "0001NP0000"},
		{"node-b", "0001NO00", "0001NP003102560001-000100000"},
		{"node-b", "0001NO01", "0001NP000"},
		{"node-b", "0001NO03", "0001NP15"},
	} {
		ts := startServer(t, nil, Config{Node: tc.node, EventLoops: -1})
		c := ts.dial(t, nil)
		if got := c.call(tc.msg); got != tc.want {
			t.Errorf("node %q, %s: %q, want %q", tc.node, tc.msg, got, tc.want)
		}
	}
}
