// Command ceiling measures what a durable CreateKey can cost on a machine at
// least: a minimal HTTP server, beside which `payhsm bench -http ... -mix
// CK=1` measures payhsm's own (issue #20, goal 2; docs/performance.md,
// "CreateKey's ceiling on this machine").
//
// Every request is answered after its record has been appended to one file
// and made durable by an fdatasync that the requests arriving meanwhile
// share (group commit, as payhsm's key store does). -work says what else a
// request does:
//
//	none     read the body, append a 1 KiB record
//	minimal  what a CreateKey must do, with payhsm's own primitives and no
//	         more: verify SigV4 (protocol/awsapi/sigv4), decode the input
//	         with encoding/json, draw an AES-128 key, wrap it in an X9.143
//	         key block under an AES-256 key (hsm/tr31, block keys derived
//	         once), compute its CMAC KCV (hsm/kcv), seal the record with
//	         HMAC-SHA256, append an audit line to a second file (written
//	         with the group and not synced: payhsm's CreateKey entry is
//	         durable with the key record) and answer the shape the AWS SDKs
//	         decode
//
// It is a measuring instrument, not a key store: the keys it makes are
// thrown away (the wrapping key is random per run).
//
//	go run ./test/ceiling -work minimal -credentials DATA-DIR/credentials &
//	payhsm bench -http http://127.0.0.1:18091 -credentials DATA-DIR/credentials -conns 32 -duration 8s -warmup 2s -pid PID -mix CK=1
package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"payhsm/appliance"
	"payhsm/hsm/kcv"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/protocol/awsapi/sigv4"
)

// config is what a server is made of.
type config struct {
	dir     string            // the record and audit files go here
	work    string            // "none" or "minimal"
	sync    bool              // fdatasync each group (false: the non-durable bound)
	creds   map[string]string // access key id → secret of who may sign (minimal)
	region  string
	service string
}

// server answers CreateKey-shaped requests after a group commit.
type server struct {
	cfg    config
	verify *sigv4.Verifier
	keys   tr31.BlockKeys // the wrapping key's block keys
	seal   []byte         // the record MAC key

	mu      sync.Mutex
	pending []*waiter
	kick    chan struct{}
	log     *os.File
	audit   *os.File
	done    chan struct{}
}

// waiter is one request's record, waiting for its group's sync.
type waiter struct {
	rec, audit []byte
	err        error
	synced     chan struct{}
}

func newServer(cfg config) (*server, error) {
	if cfg.work != "none" && cfg.work != "minimal" {
		return nil, fmt.Errorf("ceiling: -work %q: none or minimal", cfg.work)
	}
	s := &server{cfg: cfg, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if cfg.work == "minimal" {
		if len(cfg.creds) == 0 {
			return nil, errors.New("ceiling: -work minimal needs credentials")
		}
		s.verify = &sigv4.Verifier{Creds: sigv4.StaticCredentials(cfg.creds), Region: cfg.region, Service: cfg.service}
		kbpk := make([]byte, 32)
		s.seal = make([]byte, 32)
		_, _ = rand.Read(kbpk)
		_, _ = rand.Read(s.seal)
		var err error
		if s.keys, err = tr31.DeriveBlockKeys('D', kbpk); err != nil {
			return nil, err
		}
	}
	var err error
	if s.log, err = os.OpenFile(filepath.Join(cfg.dir, "records"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	if s.audit, err = os.OpenFile(filepath.Join(cfg.dir, "audit"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600); err != nil {
		_ = s.log.Close()
		return nil, err
	}
	go s.writer()
	return s, nil
}

// close stops the writer and closes the files, once nothing is served any
// more (run shuts the HTTP server down first): a request still waiting
// would wait for ever.
func (s *server) close() error {
	close(s.kick)
	<-s.done
	return errors.Join(s.log.Close(), s.audit.Close())
}

// writer is the group commit: it writes every record pending, syncs once,
// and releases their requests, while the next group gathers.
func (s *server) writer() {
	defer close(s.done)
	var recs, audit []byte
	for range s.kick {
		for {
			s.mu.Lock()
			group := s.pending
			s.pending = nil
			s.mu.Unlock()
			if len(group) == 0 {
				break
			}
			recs, audit = recs[:0], audit[:0]
			for _, w := range group {
				recs = append(recs, w.rec...)
				audit = append(audit, w.audit...)
			}
			err := s.commit(recs, audit)
			for _, w := range group {
				w.err = err
				close(w.synced)
			}
		}
	}
}

func (s *server) commit(recs, audit []byte) error {
	if _, err := s.log.Write(recs); err != nil {
		return err
	}
	if len(audit) > 0 {
		if _, err := s.audit.Write(audit); err != nil {
			return err
		}
	}
	if !s.cfg.sync {
		return nil
	}
	return s.log.Sync()
}

// append queues a record and waits for its group's sync.
func (s *server) append(rec, audit []byte) error {
	w := &waiter{rec: rec, audit: audit, synced: make(chan struct{})}
	s.mu.Lock()
	s.pending = append(s.pending, w)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-w.synced
	return w.err
}

// createKeyInput is the part of a CreateKey input the ceiling reads.
type createKeyInput struct {
	Exportable    *bool
	KeyAttributes struct {
		KeyAlgorithm  string
		KeyClass      string
		KeyUsage      string
		KeyModesOfUse map[string]bool
	}
}

const createKeyTarget = "PaymentCryptographyControlPlane.CreateKey"

const recordSize = 1024 // about a payhsm key record with its journal entry and head

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationException", err)
		return
	}
	if s.cfg.work == "minimal" && r.Header.Get("X-Amz-Target") != createKeyTarget {
		// The bench's setup calls after its CreateKeys (GeneratePinData and
		// the like): it needs only a 200.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	var rec, audit []byte
	var id, kcvHex string
	if s.cfg.work == "none" {
		rec = make([]byte, recordSize)
		copy(rec, body)
		rec[recordSize-1] = '\n'
		id = "abcdefghijklmnop"
	} else {
		var status int
		if rec, audit, id, kcvHex, status, err = s.minimal(r, body); err != nil {
			typ := "ValidationException"
			if status == http.StatusForbidden {
				typ = "AccessDeniedException"
			}
			writeError(w, status, typ, err)
			return
		}
	}
	if err := s.append(rec, audit); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerException", err)
		return
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	out := make([]byte, 0, 768)
	out = append(out, `{"Key":{"KeyArn":"arn:aws:payment-cryptography:`...)
	out = append(out, s.cfg.region...)
	out = append(out, `:111122223333:key/`...)
	out = append(out, id...)
	out = append(out, `","KeyAttributes":{"KeyAlgorithm":"AES_128","KeyClass":"SYMMETRIC_KEY","KeyModesOfUse":{"Decrypt":true,"DeriveKey":false,"Encrypt":true,"Generate":false,"NoRestrictions":false,"Sign":false,"Unwrap":true,"Verify":false,"Wrap":true},"KeyUsage":"TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY"},"KeyCheckValue":"`...)
	out = append(out, kcvHex...)
	out = append(out, `","KeyCheckValueAlgorithm":"CMAC","KeyOrigin":"AWS_PAYMENT_CRYPTOGRAPHY","KeyState":"CREATE_COMPLETE","Enabled":true,"Exportable":true,"CreateTimestamp":`...)
	out = append(out, now...)
	out = append(out, `,"UsageStartTimestamp":`...)
	out = append(out, now...)
	out = append(out, `}}`...)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out) //nolint:gosec // G705: JSON of the server's own making, not HTML
}

// writeError answers in the AWS JSON protocol's error shape.
func writeError(w http.ResponseWriter, status int, typ string, err error) {
	b, _ := json.Marshal(map[string]string{"__type": typ, "message": err.Error()})
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// minimal does what a CreateKey must: it returns the sealed record, the
// audit line, the key's id and KCV, or the status of a refusal.
func (s *server) minimal(r *http.Request, body []byte) (rec, audit []byte, id, kcvHex string, status int, err error) {
	principal, err := s.verify.Verify(r, body)
	if err != nil {
		return nil, nil, "", "", http.StatusForbidden, err
	}
	var in createKeyInput
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, nil, "", "", http.StatusBadRequest, err
	}
	// The bench makes AES-128 keys (CK) and, to set up, TDES_2KEY keys.
	h := tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', Exportability: 'E'}
	switch in.KeyAttributes.KeyAlgorithm {
	case "AES_128":
	case "TDES_2KEY":
		h.KeyUsage, h.Algorithm = "P0", 'T'
	default:
		return nil, nil, "", "", http.StatusBadRequest, fmt.Errorf("ceiling: KeyAlgorithm %q: AES_128 or TDES_2KEY", in.KeyAttributes.KeyAlgorithm)
	}
	var key [16]byte
	var idb [10]byte
	_, _ = rand.Read(key[:])
	_, _ = rand.Read(idb[:])
	id = hex.EncodeToString(idb[:])[:16]
	defer clear(key[:])
	block, err := tr31.WrapWith(s.keys, h, key[:])
	if err != nil {
		return nil, nil, "", "", http.StatusInternalServerError, err
	}
	if h.Algorithm == 'A' {
		c, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, nil, "", "", http.StatusInternalServerError, err
		}
		kcvHex = strings.ToUpper(hex.EncodeToString(kcv.CMAC(c)))
	} else {
		c, err := tdes.NewCipher(key[:])
		if err != nil {
			return nil, nil, "", "", http.StatusInternalServerError, err
		}
		kcvHex = strings.ToUpper(hex.EncodeToString(kcv.ANSIX924(c)))
	}
	rec = make([]byte, 0, recordSize+64)
	rec = append(rec, `{"id":"`...)
	rec = append(rec, id...)
	rec = append(rec, `","block":"`...)
	rec = append(rec, block...)
	rec = append(rec, `","kcv":"`...)
	rec = append(rec, kcvHex...)
	rec = append(rec, `","createdBy":"`...)
	rec = append(rec, principal...)
	rec = append(rec, `","input":`...)
	rec = append(rec, bytes.TrimSpace(body)...)
	for len(rec) < recordSize-2-2*sha256.Size-8 {
		rec = append(rec, ' ')
	}
	m := hmac.New(sha256.New, s.seal)
	m.Write(rec)
	rec = append(rec, `,"mac":"`...)
	rec = hex.AppendEncode(rec, m.Sum(nil))
	rec = append(rec, "\"}\n"...)
	audit = fmt.Appendf(nil, `{"time":%q,"principal":%q,"action":"CreateKey","key":%q,"result":"ok"}`+"\n",
		time.Now().UTC().Format(time.RFC3339Nano), principal, id)
	return rec, audit, id, kcvHex, 0, nil
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	var cfg config
	addr := flag.String("addr", "127.0.0.1:18091", "listen address")
	creds := flag.String("credentials", "", "AWS shared credentials file of who may sign (-work minimal)")
	flag.StringVar(&cfg.dir, "dir", "", "directory for the record and audit files (default: a new temporary one)")
	flag.StringVar(&cfg.work, "work", "minimal", "none or minimal")
	flag.BoolVar(&cfg.sync, "sync", true, "fdatasync each group")
	flag.StringVar(&cfg.region, "region", "us-east-1", "signing region")
	flag.StringVar(&cfg.service, "service", "payment-cryptography", "signing name")
	flag.Parse()
	if cfg.dir == "" {
		d, err := os.MkdirTemp("", "ceiling")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(d) }()
		cfg.dir = d
	}
	if cfg.work == "minimal" {
		var err error
		if cfg.creds, err = appliance.ReadCredentials(*creds); err != nil {
			return err
		}
	}
	s, err := newServer(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	shut := make(chan error, 1)
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(c) // waits for the requests in flight: none appends after
	}()
	log.Printf("ceiling: -work %s -sync=%v on %s, files in %s", cfg.work, cfg.sync, *addr, cfg.dir)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if err := <-shut; err != nil {
		return err
	}
	return s.close()
}
