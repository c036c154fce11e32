//go:build !unix

package secret

import "errors"

func mlock([]byte) error   { return errors.ErrUnsupported }
func munlock([]byte) error { return errors.ErrUnsupported }
