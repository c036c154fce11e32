package keystore

import (
	"errors"
	"io"
)

// closeJoin closes c and, when that fails, joins the failure into *err: the
// deferred close of a batch, snapshot or value in a function with a named
// error result, so that no Close error is dropped.
//
//	defer closeJoin(&err, b)
func closeJoin(err *error, c io.Closer) {
	if cerr := c.Close(); cerr != nil {
		*err = errors.Join(*err, cerr)
	}
}
