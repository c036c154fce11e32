package ceremony

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"

	"payhsm/internal/cli"
)

// Console is where a ceremony talks to its operators: a terminal on
// stdin/stdout or a serial line. Secrets are read without echo and returned
// as byte slices the caller zeroes.
type Console struct {
	r  *bufio.Reader
	w  *cli.Writer // keeps the first write error: a prompt that failed fails its step (Err)
	fd int         // terminal whose echo is switched off for secrets; -1 when not a terminal
	// skipLF drops a '\n' that follows a '\r' line end (without waiting for
	// it: a serial line may send '\r' alone).
	skipLF bool
}

// NewConsole talks over r and w. When r is a terminal, echo is switched off while secrets are typed.
func NewConsole(r io.Reader, w io.Writer) *Console {
	c := &Console{r: bufio.NewReader(r), w: cli.NewWriter(w), fd: -1}
	if f, ok := r.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			c.fd = int(f.Fd())
		}
	}
	return c
}

// OpenSerial opens a serial device (8N1 at baud) as a console. The operator's
// terminal does not echo locally, and this console echoes nothing: secrets
// typed on it are never shown.
func OpenSerial(device string, baud int) (*Console, io.Closer, error) {
	p, err := serial.Open(device, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, nil, fmt.Errorf("serial console %s: %w", device, err)
	}
	return &Console{r: bufio.NewReader(p), w: cli.NewWriter(crlf{p}), fd: -1}, p, nil
}

// crlf turns \n into \r\n for serial terminals.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Printf writes to the operator. A failure is kept: Err reports it, and
// every later prompt fails with it.
func (c *Console) Printf(format string, a ...any) { c.w.Printf(format, a...) }

// Err returns the first failure to write to the operator, or nil. A step
// whose output the operators may not have seen has not succeeded.
func (c *Console) Err() error {
	if err := c.w.Err(); err != nil {
		return fmt.Errorf("ceremony console: %w", err)
	}
	return nil
}

// prompt shows p, reporting whether the operator can have seen it (and
// everything written before).
func (c *Console) prompt(p string) error {
	c.Printf("%s", p)
	return c.Err()
}

// ErrAborted reports that the operator input ended.
var ErrAborted = errors.New("ceremony: input ended; nothing was changed by the unfinished step")

// Ask prompts and reads one line.
func (c *Console) Ask(prompt string) (string, error) {
	if err := c.prompt(prompt); err != nil {
		return "", err
	}
	line, err := c.readLine()
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(line))
	clear(line)
	return s, nil
}

// Secret prompts and reads one line without echo. The caller zeroes the result.
func (c *Console) Secret(prompt string) ([]byte, error) {
	if err := c.prompt(prompt); err != nil {
		return nil, err
	}
	if c.fd >= 0 {
		if t, err := unix.IoctlGetTermios(c.fd, unix.TCGETS); err == nil {
			saved := *t
			t.Lflag &^= unix.ECHO
			if unix.IoctlSetTermios(c.fd, unix.TCSETS, t) == nil {
				defer func() {
					_ = unix.IoctlSetTermios(c.fd, unix.TCSETS, &saved)
					c.Printf("\n")
				}()
			}
		}
	}
	line, err := c.readLine()
	if err != nil {
		return nil, err
	}
	out := []byte(strings.TrimSpace(string(line)))
	clear(line)
	return out, nil
}

// Confirm asks a yes/no question; only "y" or "yes" is yes.
func (c *Console) Confirm(prompt string) (bool, error) {
	a, err := c.Ask(prompt + " [y/N] ")
	if err != nil {
		return false, err
	}
	a = strings.ToLower(a)
	return a == "y" || a == "yes", nil
}

func (c *Console) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return line, nil
			}
			clear(line)
			return nil, ErrAborted
		}
		if b == '\n' && c.skipLF && len(line) == 0 {
			c.skipLF = false
			continue
		}
		c.skipLF = b == '\r'
		if b == '\n' || b == '\r' {
			return line, nil
		}
		if len(line) > 4096 {
			clear(line)
			return nil, errors.New("ceremony: input line too long")
		}
		line = append(line, b)
	}
}
