package mpa

import (
	"errors"
	"strings"
	"testing"
	"time"

	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/fault"
	"payhsm/keystore"
	"payhsm/ops/opstest"
)

// enrolled stands for the custodian record: name → passphrase.
type enrolled map[string]string

func (e enrolled) Names() []string {
	var out []string
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		if _, ok := e[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

func (e enrolled) Verify(name string, pass []byte) bool {
	p, ok := e[name]
	return ok && p == string(pass)
}

var custodians4 = enrolled{"alice": "pa", "bob": "pb", "carol": "pc", "dave": "pd"}

type fixture struct {
	r      *Registry
	store  *keystore.Store
	now    time.Time
	events []audit.Event
	kinds  []audit.Kind
	fail   error // Audit answers this
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, store, cust := opstest.NewStoreCustody(t)
	f := &fixture{store: store, now: time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)}
	f.r = Open(store, cust.FleetSealer("default"), "us-east-1", "111122223333")
	f.r.SetClock(func() time.Time { return f.now })
	f.r.Audit = func(k audit.Kind, e audit.Event) error {
		if f.fail != nil {
			return f.fail
		}
		f.kinds, f.events = append(f.kinds, k), append(f.events, e)
		return nil
	}
	return f
}

func (f *fixture) team(t *testing.T, name string, members []string, m int) *Team {
	t.Helper()
	tm, err := f.r.CreateTeam(custodians4, name, members, m, []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func vote(name, pass string, approve bool) Vote {
	return Vote{Approval: custodian.Approval{Name: name, Passphrase: []byte(pass)}, Approve: approve}
}

func kindOf(err error) fault.Kind { return fault.KindOf(err) }

func TestCreateTeamRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, c := range []struct {
		name    string
		members []string
		m       int
		want    string // "" = created
	}{
		{"ok", []string{"alice", "bob", "carol"}, 2, ""},
		{"ok", []string{"alice", "bob"}, 2, "already exists"},
		{"bad name!", []string{"alice", "bob"}, 2, "team name"},
		{"stranger", []string{"alice", "mallory"}, 2, "not an enrolled custodian"},
		{"twice", []string{"alice", "alice"}, 2, "listed twice"},
		{"alone", []string{"alice", "bob"}, 1, "at least 2"},
		{"toomany", []string{"alice", "bob"}, 3, "at most"},
	} {
		_, err := f.r.CreateTeam(custodians4, c.name, c.members, c.m, nil)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CreateTeam(%q, %v, %d) = %v, want %q", c.name, c.members, c.m, err, c.want)
		}
	}
	teams, err := f.r.Teams()
	if err != nil || len(teams) != 1 {
		t.Fatalf("teams = %v, %v", teams, err)
	}
	if !ValidTeamARN(teams[0].ARN) || teams[0].ARN != "arn:aws:mpa:us-east-1:111122223333:approval-team/ok" {
		t.Errorf("team ARN %s does not match the model's MpaTeamArn pattern", teams[0].ARN)
	}
}

func TestARNPatterns(t *testing.T) {
	t.Parallel()
	for arn, ok := range map[string]bool{
		"arn:aws:mpa:us-east-1:111122223333:approval-team/root-ca":     true,
		"arn:aws-cn:mpa:cn-north-1:111122223333:approval-team/a.b_c-d": true,
		"arn:aws:mpa:us-east-1:11112222333:approval-team/x":            false, // 11 digits
		"arn:aws:mpa:us-east-1:111122223333:approval-team/":            false,
		"arn:aws:mpa:us-east-1:111122223333:approval-team/a b":         false,
		"arn:aws:kms:us-east-1:111122223333:approval-team/x":           false,
	} {
		if ValidTeamARN(arn) != ok {
			t.Errorf("ValidTeamARN(%q) != %t", arn, ok)
		}
	}
	if !ValidSessionARN("arn:aws:mpa:us-east-1:111122223333:session/root-ca/0123abcd") || ValidSessionARN("arn:aws:mpa:us-east-1:111122223333:session/root-ca/a.b") {
		t.Error("ValidSessionARN does not follow the model's MpaSessionArn pattern")
	}
}

// byP is the requester of the protected requests in the tests.
var byP = Requester{Protocol: "aws", Principal: "arn:aws:iam::111122223333:user/p", Source: "192.0.2.7:40000", RequestID: "req-1"}

// TestAuthorizeFlow: unprotected → protected; refused until M of the team
// approve; bound to the subject; used once; Release gives it back.
func TestAuthorizeFlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cert := []byte("certificate DER")
	if g, err := f.r.Authorize(ImportRootCertificate, cert, "", byP); g != nil || err != nil {
		t.Fatalf("unprotected: %v %v", g, err)
	}
	tm := f.team(t, "root-ca", []string{"alice", "bob", "carol"}, 2)
	byA := Requester{Protocol: "aws", Principal: "arn:aws:iam::111122223333:user/admin", Source: "192.0.2.8:40000", RequestID: "req-0"}
	a, err := f.r.Associate(ImportRootCertificate, tm.ARN, "", byA)
	if err != nil || a.State != StateActive || a.TeamARN != tm.ARN {
		t.Fatalf("associate: %+v %v", a, err)
	}
	checkRequester(t, "association", f.events[len(f.events)-1], byA)
	if _, err := f.r.Authorize(ImportRootCertificate, cert, "", byP); kindOf(err) != fault.Validation || !strings.Contains(err.Error(), "RequesterComment") {
		t.Fatalf("no comment: %v", err)
	}
	_, err = f.r.Authorize(ImportRootCertificate, cert, "why", byP)
	if kindOf(err) != fault.AccessDenied {
		t.Fatalf("before approval: %v", err)
	}
	sessions, _ := f.r.Sessions(false)
	if len(sessions) != 1 || sessions[0].Status != StatusPending || sessions[0].Subject != Digest(cert) || !ValidSessionARN(sessions[0].ARN) {
		t.Fatalf("sessions = %+v", sessions)
	}
	s := sessions[0]
	if !strings.Contains(err.Error(), s.ARN) {
		t.Errorf("the refusal does not name the session: %v", err)
	}
	if f.kinds[len(f.kinds)-1] != audit.KindDenial || f.events[len(f.events)-1].Outcome != audit.Denied {
		t.Errorf("the refusal was not audited as a denial: %v %+v", f.kinds, f.events[len(f.events)-1])
	}
	checkRequester(t, "refusal", f.events[len(f.events)-1], byP)
	if _, err := f.r.Authorize(ImportRootCertificate, cert, "why", byP); err == nil {
		t.Fatal("second request before approval")
	}
	if ss, _ := f.r.Sessions(true); len(ss) != 1 {
		t.Fatalf("a repeated request opened another session: %d", len(ss))
	}
	// Votes that do not count.
	for _, c := range []struct {
		v    Vote
		want string
	}{
		{vote("alice", "wrong", true), "authentication failed"},
		{vote("dave", "pd", true), "not a member"},
		{vote("mallory", "x", true), "authentication failed"},
	} {
		if _, err := f.r.Decide(custodians4, s.ID, []Vote{c.v}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("vote %s: %v, want %q", c.v.Name, err, c.want)
		}
	}
	got, err := f.r.Decide(custodians4, s.ARN, []Vote{vote("alice", "pa", true)})
	if err != nil || got.Status != StatusPending || len(got.Approvals) != 1 {
		t.Fatalf("first approval: %+v %v", got, err)
	}
	if _, err := f.r.Decide(custodians4, s.ID, []Vote{vote("alice", "pa", true)}); err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Fatalf("alice twice: %v", err)
	}
	if _, err := f.r.Authorize(ImportRootCertificate, cert, "why", byP); kindOf(err) != fault.AccessDenied || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("after one approval: %v", err)
	}
	if got, err = f.r.Decide(custodians4, s.ID, []Vote{vote("carol", "pc", true)}); err != nil || got.Status != StatusApproved {
		t.Fatalf("second approval: %+v %v", got, err)
	}
	// Bound to the subject: another certificate is not approved.
	if _, err := f.r.Authorize(ImportRootCertificate, []byte("another certificate"), "why", byP); kindOf(err) != fault.AccessDenied {
		t.Fatalf("another subject: %v", err)
	}
	g, err := f.r.Authorize(ImportRootCertificate, cert, "", byP)
	if err != nil || g == nil || g.Session.ARN != s.ARN || g.Session.Status != StatusApproved {
		t.Fatalf("approved: %+v %v", g, err)
	}
	checkRequester(t, "approved use", f.events[len(f.events)-1], byP)
	if _, err := f.r.Authorize(ImportRootCertificate, cert, "why", byP); kindOf(err) != fault.AccessDenied {
		t.Fatalf("an approved session was used twice: %v", err)
	}
	if refused, used := f.r.Counts(); refused != 5 || used != 1 {
		t.Errorf("Counts = %d refused, %d used; want 5, 1", refused, used)
	}
	g.Release() // the operation failed after all: the approval comes back
	if g2, err := f.r.Authorize(ImportRootCertificate, cert, "", byP); err != nil || g2 == nil || g2.Session.ARN != s.ARN {
		t.Fatalf("after Release: %+v %v", g2, err)
	}
}

func TestRejectAndExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tm := f.team(t, "t", []string{"alice", "bob"}, 2)
	if _, err := f.r.Associate(ImportRootCertificate, tm.ARN, "", Requester{}); err != nil {
		t.Fatal(err)
	}
	cert := []byte("c")
	_, _ = f.r.Authorize(ImportRootCertificate, cert, "why", byP)
	ss, _ := f.r.Sessions(false)
	got, err := f.r.Decide(custodians4, ss[0].ID, []Vote{vote("bob", "pb", false)})
	if err != nil || got.Status != StatusFailed || !strings.Contains(got.Message, "rejected by custodian bob") {
		t.Fatalf("reject: %+v %v", got, err)
	}
	if _, err := f.r.Decide(custodians4, ss[0].ID, []Vote{vote("alice", "pa", true)}); err == nil {
		t.Fatal("a vote on a failed session counted")
	}
	// A new request opens a new session; it expires unapproved.
	_, _ = f.r.Authorize(ImportRootCertificate, cert, "why", byP)
	ss2, _ := f.r.Sessions(false)
	if len(ss2) != 1 || ss2[0].ID == ss[0].ID {
		t.Fatalf("after a rejection: %+v", ss2)
	}
	f.now = f.now.Add(SessionTTL + time.Second)
	if p, _ := f.r.Sessions(false); len(p) != 0 {
		t.Fatalf("expired sessions are still pending: %+v", p)
	}
	if _, err := f.r.Decide(custodians4, ss2[0].ID, []Vote{vote("alice", "pa", true)}); err == nil || !strings.Contains(err.Error(), "FAILED") {
		t.Fatalf("vote on an expired session: %v", err)
	}
	// An approved session not used in time expires too.
	_, _ = f.r.Authorize(ImportRootCertificate, cert, "why", byP)
	ss3, _ := f.r.Sessions(false)
	f.now = f.now.Add(time.Hour) // approved an hour after it was opened
	if _, err := f.r.Decide(custodians4, ss3[0].ID, []Vote{vote("alice", "pa", true), vote("bob", "pb", true)}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(SessionTTL - time.Second) // approved just now: usable for SessionTTL from the approval
	ss4, _ := f.r.Sessions(true)
	if ss4[0].Status != StatusApproved || !ss4[0].Expires.After(f.now) {
		t.Fatalf("an approval expired with its session's opening: %+v", ss4[0])
	}
	f.now = f.now.Add(2 * time.Second)
	if g, err := f.r.Authorize(ImportRootCertificate, cert, "why", byP); g != nil || err == nil {
		t.Fatalf("an approval outlived its session: %+v %v", g, err)
	}
}

func TestDisassociateAndUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	t1 := f.team(t, "one", []string{"alice", "bob"}, 2)
	t2 := f.team(t, "two", []string{"carol", "dave"}, 2)
	if _, err := f.r.Disassociate(ImportRootCertificate, "", Requester{}); kindOf(err) != fault.NotFound {
		t.Fatalf("disassociate with none: %v", err)
	}
	if _, err := f.r.GetAssociation(ImportRootCertificate); kindOf(err) != fault.NotFound {
		t.Fatalf("get with none: %v", err)
	}
	if _, err := f.r.Associate(ImportRootCertificate, "arn:aws:mpa:us-east-1:111122223333:approval-team/nobody", "", Requester{}); kindOf(err) != fault.NotFound {
		t.Fatalf("unknown team: %v", err)
	}
	if _, err := f.r.Associate("EXPORT_EVERYTHING", t1.ARN, "", Requester{}); kindOf(err) != fault.Validation {
		t.Fatalf("unknown operation: %v", err)
	}
	if _, err := f.r.Associate(ImportRootCertificate, t1.ARN, "", Requester{}); err != nil {
		t.Fatal(err)
	}
	if err := f.r.RemoveTeam("one", nil); err == nil {
		t.Fatal("an associated team was removed")
	}
	// Moving to another team: the current team approves.
	a, err := f.r.Associate(ImportRootCertificate, t2.ARN, "rotate approvers", Requester{})
	if err != nil || a.State != StateUpdatePending || a.TeamARN != t1.ARN || a.Status == nil || a.Status.Status != StatusPending {
		t.Fatalf("update: %+v %v", a, err)
	}
	if _, err := f.r.Decide(custodians4, a.Status.ID, []Vote{vote("carol", "pc", true)}); err == nil {
		t.Fatal("the new team approved its own association")
	}
	if s, err := f.r.Decide(custodians4, a.Status.ID, []Vote{vote("alice", "pa", true), vote("bob", "pb", true)}); err != nil || s.Status != StatusApproved {
		t.Fatalf("approve the update: %+v %v", s, err)
	}
	if a, err = f.r.GetAssociation(ImportRootCertificate); err != nil || a.State != StateActive || a.TeamARN != t2.ARN {
		t.Fatalf("after the update: %+v %v", a, err)
	}
	// Disassociating: DELETE_PENDING, still protected, then gone.
	a, err = f.r.Disassociate(ImportRootCertificate, "done", Requester{})
	if err != nil || a.State != StateDeletePending || a.Status == nil || a.Status.Status != StatusPending {
		t.Fatalf("disassociate: %+v %v", a, err)
	}
	if again, err := f.r.Disassociate(ImportRootCertificate, "done", Requester{}); err != nil || again.Status.ID != a.Status.ID {
		t.Fatalf("disassociate again: %+v %v", again, err)
	}
	if _, err := f.r.Authorize(ImportRootCertificate, []byte("c"), "why", byP); kindOf(err) != fault.AccessDenied {
		t.Fatalf("unprotected while the disassociation waits: %v", err)
	}
	if s, err := f.r.Decide(custodians4, a.Status.ID, []Vote{vote("carol", "pc", true), vote("dave", "pd", true)}); err != nil || s.Status != StatusApproved {
		t.Fatalf("approve the disassociation: %+v %v", s, err)
	}
	if _, err := f.r.GetAssociation(ImportRootCertificate); kindOf(err) != fault.NotFound {
		t.Fatalf("after the disassociation: %v", err)
	}
	if g, err := f.r.Authorize(ImportRootCertificate, []byte("c"), "", byP); g != nil || err != nil {
		t.Fatalf("unprotected again: %v %v", g, err)
	}
	// A rejected disassociation leaves the association active.
	if _, err := f.r.Associate(ImportRootCertificate, t1.ARN, "", Requester{}); err != nil {
		t.Fatal(err)
	}
	a, _ = f.r.Disassociate(ImportRootCertificate, "", Requester{})
	if _, err := f.r.Decide(custodians4, a.Status.ID, []Vote{vote("bob", "pb", false)}); err != nil {
		t.Fatal(err)
	}
	if a, err = f.r.GetAssociation(ImportRootCertificate); err != nil || a.State != StateActive || a.Status.Status != StatusFailed {
		t.Fatalf("after a rejected disassociation: %+v %v", a, err)
	}
}

// TestSealedState: the state cannot be altered in the key store, and a
// decision whose audit record fails is not taken.
func TestSealedState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tm := f.team(t, "t", []string{"alice", "bob"}, 2)
	if _, err := f.r.Associate(ImportRootCertificate, tm.ARN, "", Requester{}); err != nil {
		t.Fatal(err)
	}
	f.fail = errors.New("disk full")
	if _, err := f.r.Authorize(ImportRootCertificate, []byte("c"), "why", byP); err == nil || !strings.Contains(err.Error(), "not taken") {
		t.Fatalf("unrecorded refusal: %v", err)
	}
	if ss, _ := f.r.Sessions(true); len(ss) != 0 {
		t.Fatalf("a session was opened without its record: %+v", ss)
	}
	f.fail = nil
	sealed, err := f.store.GetMeta(metaName)
	if err != nil {
		t.Fatal(err)
	}
	sealed[len(sealed)/2] ^= 1
	if err := f.store.PutMeta(metaName, sealed); err != nil {
		t.Fatal(err)
	}
	if g, err := f.r.Authorize(ImportRootCertificate, []byte("c"), "why", byP); g != nil || kindOf(err) != fault.Internal {
		t.Fatalf("altered state: %v %v", g, err)
	}
}

// BenchmarkAuthorize is what a root certificate import pays for the MPA
// check: one sealed-record read and unseal (unprotected), plus a seal and
// write when a session is opened or used (protected, refused here).
func BenchmarkAuthorize(b *testing.B) {
	for _, protected := range []bool{false, true} {
		name := "unprotected"
		if protected {
			name = "protected-refused"
		}
		b.Run(name, func(b *testing.B) {
			_, store, cust := opstest.NewStoreCustody(b)
			r := Open(store, cust.FleetSealer("default"), "us-east-1", "111122223333")
			if _, err := r.CreateTeam(custodians4, "t", []string{"alice", "bob"}, 2, nil); err != nil {
				b.Fatal(err)
			}
			if protected {
				if _, err := r.Associate(ImportRootCertificate, r.TeamARN("t"), "", Requester{}); err != nil {
					b.Fatal(err)
				}
			}
			cert := []byte("certificate")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Authorize(ImportRootCertificate, cert, "why", byP); protected != (err != nil) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOpenSessionsBounded: a requester cannot grow the sealed record without
// bound by asking for many certificates.
func TestOpenSessionsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tm := f.team(t, "t", []string{"alice", "bob"}, 2)
	if _, err := f.r.Associate(ImportRootCertificate, tm.ARN, "", Requester{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxLive; i++ {
		if _, err := f.r.Authorize(ImportRootCertificate, []byte{byte(i)}, "why", byP); kindOf(err) != fault.AccessDenied {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := f.r.Authorize(ImportRootCertificate, []byte("one more"), "why", byP); kindOf(err) != fault.QuotaExceeded {
		t.Fatalf("beyond the bound: %v", err)
	}
	// A request for a certificate already pending still names its session.
	if _, err := f.r.Authorize(ImportRootCertificate, []byte{0}, "why", byP); kindOf(err) != fault.AccessDenied {
		t.Fatalf("a pending certificate: %v", err)
	}
	f.now = f.now.Add(SessionTTL + time.Second)
	if _, err := f.r.Authorize(ImportRootCertificate, []byte("one more"), "why", byP); kindOf(err) != fault.AccessDenied {
		t.Fatalf("after the open sessions expired: %v", err)
	}
}

// checkRequester checks that the audit entry e names the requester by.
func checkRequester(t *testing.T, what string, e audit.Event, by Requester) {
	t.Helper()
	if e.Protocol != by.Protocol || e.Principal != by.Principal || e.Source != by.Source || e.RequestID != by.RequestID {
		t.Errorf("%s: the audit entry names %q %q %q %q; want the requester %+v", what, e.Protocol, e.Principal, e.Source, e.RequestID, by)
	}
}
