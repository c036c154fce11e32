// Package hostclient is the client side of payhsm's host-command port: a
// connection that frames requests, numbers them in the message header and
// checks that each response echoes it, and `payhsm client`, which sends one
// command given on the command line or in a file and prints the parsed
// response.
package hostclient

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"payhsm/internal/cli"
	"payhsm/protocol/hostcmd"
)

// Client is one host-port connection. It is not safe for concurrent use.
type Client struct {
	conn      net.Conn
	br        *bufio.Reader
	HeaderLen int
	Timeout   time.Duration
	seq       uint64
	buf       []byte
}

// Response is a parsed response message.
type Response struct {
	Header string
	Code   string // response code, e.g. "ND"
	Error  string // 2-character error code, "00" on success
	Fields []byte // everything after the error code (trailer included)
}

// Dial connects to addr, over TLS when tlsCfg is not nil.
func Dial(addr string, tlsCfg *tls.Config, headerLen int) (*Client, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("hostclient: dial %s: %w", addr, err)
	}
	// Go's TCP connections have Nagle's algorithm off (TCP_NODELAY) by default.
	return &Client{conn: c, br: bufio.NewReaderSize(c, 8192), HeaderLen: headerLen, Timeout: 10 * time.Second}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// header is the next correlation header: the sequence number, decimal,
// right-justified in HeaderLen characters.
func (c *Client) header() string {
	c.seq++
	s := fmt.Sprintf("%0*d", c.HeaderLen, c.seq)
	return s[len(s)-c.HeaderLen:]
}

// Call sends command code with its fields and returns the parsed response.
func (c *Client) Call(code string, fields []byte) (*Response, error) {
	h := c.header()
	msg := append(append([]byte(h), code...), fields...)
	if len(msg) > hostcmd.MaxMessage {
		return nil, fmt.Errorf("hostclient: message of %d bytes exceeds %d", len(msg), hostcmd.MaxMessage)
	}
	buf, err := hostcmd.AppendFrame(c.buf[:0], msg)
	if err != nil {
		return nil, fmt.Errorf("hostclient: %w", err)
	}
	c.buf = buf
	if c.Timeout > 0 {
		if err := c.conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
			return nil, fmt.Errorf("hostclient: set deadline: %w", err)
		}
	}
	if _, err := c.conn.Write(c.buf); err != nil {
		return nil, fmt.Errorf("hostclient: send: %w", err)
	}
	resp, err := hostcmd.ReadFrame(c.br, 1<<16-1)
	if err != nil {
		return nil, fmt.Errorf("hostclient: receive: %w", err)
	}
	r, err := Parse(resp, c.HeaderLen)
	if err != nil {
		return nil, err
	}
	if r.Header != h {
		return nil, fmt.Errorf("hostclient: response header %q does not echo %q", r.Header, h)
	}
	if want := hostcmd.ResponseCode(code); r.Code != want {
		return nil, fmt.Errorf("hostclient: response code %q, want %q", r.Code, want)
	}
	return r, nil
}

// Parse splits a response message.
func Parse(msg []byte, headerLen int) (*Response, error) {
	if len(msg) < headerLen+4 {
		return nil, errors.New("hostclient: response shorter than header, code and error code")
	}
	return &Response{Header: string(msg[:headerLen]), Code: string(msg[headerLen : headerLen+2]),
		Error: string(msg[headerLen+2 : headerLen+4]), Fields: msg[headerLen+4:]}, nil
}

var hexSegment = regexp.MustCompile(`\{([0-9A-Fa-f]*)\}`)

// ParseFields turns the textual form of request fields into bytes: text is
// sent as is, except {HEX} which stands for the bytes HEX (binary fields)
// and \x19 for the end-of-message delimiter.
func ParseFields(s string) ([]byte, error) {
	var err error
	out := hexSegment.ReplaceAllStringFunc(s, func(m string) string {
		b, e := hex.DecodeString(m[1 : len(m)-1])
		if e != nil {
			err = fmt.Errorf("hostclient: bad hex segment %s", m)
		}
		return string(b)
	})
	return []byte(strings.ReplaceAll(out, `\x19`, "\x19")), err
}

// SplitLine splits a line of a -file into words as a shell splits the
// command line: blanks separate words, and '...' or "..." keeps its content,
// blanks included, as one word (or part of one: a'b c'd is the word "ab cd").
// Backslashes are kept as they are (ParseFields reads \x19). So a file line
// means what the same words mean after `payhsm client`.
func SplitLine(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'' || ch == '"':
			quote, inWord = ch, true
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("hostclient: unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Command turns the words of a command (the arguments after `payhsm
// client`, or a -file line split by SplitLine) into its code and fields: the
// words are joined without separators, the first two characters are the
// command code, and the rest are fields as ParseFields reads them.
func Command(words []string) (code string, fields []byte, err error) {
	joined := strings.Join(words, "")
	if len(joined) < 2 {
		return "", nil, fmt.Errorf("hostclient: %q: no command code", joined)
	}
	fields, err = ParseFields(joined[2:])
	return joined[:2], fields, err
}

// Meaning is the description of a payShield error code (docs/host-protocol.md).
func Meaning(code string) string {
	if m, ok := meanings[code]; ok {
		return m
	}
	return "error"
}

var meanings = map[string]string{
	"00": "no error", "01": "verification failure", "02": "invalid mode flag / key length", "03": "invalid input format",
	"04": "invalid key type code or MAC algorithm", "05": "invalid key length flag or key type", "06": "invalid message length",
	"09": "invalid padding method", "12": "stored key not usable or not found", "13": "invalid LMK identifier",
	"15": "invalid input data", "17": "operation prohibited (key disabled or outside its usage period)",
	"20": "PIN block does not contain valid values", "23": "invalid PIN block format code", "24": "PIN length",
	"25": "decimalisation table error", "26": "invalid key scheme", "29": "key function not permitted",
	"41": "internal error", "68": "command disabled", "80": "data length error", "A4": "key block authentication failure",
	"A6": "invalid key usage", "A7": "invalid algorithm", "A8": "invalid mode of use", "AA": "invalid export field",
	"AB": "invalid number of optional blocks", "B2": "key block format error", "BB": "invalid wrapping key",
}

// TLSFlags are the client's TLS options.
type TLSFlags struct {
	CA, Cert, Key, ServerName string
	Enabled                   bool
}

// Register adds the TLS flags to fs.
func (t *TLSFlags) Register(fs *flag.FlagSet) {
	fs.BoolVar(&t.Enabled, "tls", false, "connect with TLS")
	fs.StringVar(&t.CA, "tls-ca", "", "PEM file of the CA that signed the server certificate (implies -tls)")
	fs.StringVar(&t.Cert, "tls-cert", "", "client certificate PEM for mutual TLS (implies -tls)")
	fs.StringVar(&t.Key, "tls-key", "", "client private key PEM for mutual TLS")
	fs.StringVar(&t.ServerName, "tls-server-name", "", "expected server name (default: the host of -addr)")
}

// Config builds the tls.Config, or nil when TLS is off.
func (t *TLSFlags) Config(addr string) (*tls.Config, error) {
	if !t.Enabled && t.CA == "" && t.Cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", t.CA)
		}
	}
	if t.Cert != "" {
		c, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

const usage = `usage: payhsm client [flags] CODE [FIELDS...]
       payhsm client [flags] -file FILE

Sends one host command and prints the parsed response. FIELDS are joined
without separators; {HEX} stands for binary bytes, \x19 for the end-of-message
delimiter. With -file, each non-empty line not starting with # is one command
in the same syntax as the command line — words separated by blanks, joined
without separators, '...' or "..." keeping blanks — sent in order on one
connection. A line is exactly what the same words after payhsm client send.

examples:
  payhsm client NC
  payhsm client CW '@alias/cvk;' '4123456789012345;' 8701 101
  payhsm client A0 0FFFS '#C0T2C00N00'
  printf '%s\n' NC "CW @alias/cvk; 4123456789012345; 8701 101" | payhsm client -file -
`

// Main runs `payhsm client`.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("payhsm client", flag.ContinueOnError)
	fs.Usage = cli.UsageFunc(fs, usage)
	addr := fs.String("addr", "127.0.0.1:1500", "host port address")
	hlen := fs.Int("header", 4, "message header length")
	file := fs.String("file", "", "file of commands, one per line (- = stdin)")
	raw := fs.Bool("raw", false, "print the response message as quoted text only")
	var tf TLSFlags
	tf.Register(fs)
	if code, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	var commands [][]string // each command's words
	switch {
	case *file != "":
		var b []byte
		var err error
		if *file == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(*file)
		}
		if err != nil {
			cli.Say(stderr, "payhsm client:", err)
			return 1
		}
		for n, l := range strings.Split(string(b), "\n") {
			words, err := SplitLine(strings.TrimRight(l, "\r"))
			if err != nil {
				cli.Sayf(stderr, "payhsm client: %s line %d: %v\n", *file, n+1, err)
				return 2
			}
			if len(words) > 0 && !strings.HasPrefix(words[0], "#") {
				commands = append(commands, words)
			}
		}
	case fs.NArg() > 0:
		commands = [][]string{fs.Args()}
	default:
		fs.Usage()
		return 2
	}
	type request struct {
		code   string
		fields []byte
	}
	reqs := make([]request, 0, len(commands))
	for _, words := range commands { // all checked before anything is sent
		code, fields, err := Command(words)
		if err != nil {
			cli.Say(stderr, "payhsm client:", err)
			return 2
		}
		reqs = append(reqs, request{code, fields})
	}
	tlsCfg, err := tf.Config(*addr)
	if err != nil {
		cli.Say(stderr, "payhsm client: TLS:", err)
		return 1
	}
	c, err := Dial(*addr, tlsCfg, *hlen)
	if err != nil {
		cli.Say(stderr, "payhsm client:", err)
		return 1
	}
	// Every response has been read by the time this runs: a failure to
	// close the connection loses nothing.
	defer func() { _ = c.Close() }()
	status := 0
	for _, rq := range reqs {
		r, err := c.Call(rq.code, rq.fields)
		if err != nil {
			cli.Say(stderr, "payhsm client:", err)
			return 1
		}
		if _, err := stdout.Write(formatResponse(r, *raw)); err != nil {
			cli.Say(stderr, "payhsm client: write output:", err)
			return 1
		}
		if r.Error != "00" {
			status = 3
		}
	}
	return status
}

// formatResponse is how Main prints a response: quoted text only when raw.
func formatResponse(r *Response, raw bool) []byte {
	if raw {
		return fmt.Appendf(nil, "%q\n", r.Header+r.Code+r.Error+string(r.Fields))
	}
	b := fmt.Appendf(nil, "header   %s\nresponse %s\nerror    %s (%s)\n", r.Header, r.Code, r.Error, Meaning(r.Error))
	if len(r.Fields) > 0 {
		b = fmt.Appendf(b, "fields   %s\n", printable(r.Fields))
	}
	return b
}

// printable shows text as text and any non-printable byte run as {HEX}.
func printable(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && (b[j] < 0x20 || b[j] > 0x7e) {
			j++
		}
		if j > i {
			sb.WriteString("{" + strings.ToUpper(hex.EncodeToString(b[i:j])) + "}")
			i = j
			continue
		}
		sb.WriteByte(b[i])
		i++
	}
	return sb.String()
}
