package ops

import (
	"fmt"

	"payhsm/fault"
)

// Hooks for BenchmarkEncryptDataSteps (data_steps_bench_test.go): each
// step of AppendEncryptData's path with a cached AES key, on its own.

// StepGet is a referenced cache lookup and its Release.
func StepGet(s *Service, ident string) {
	if w, _ := s.cache.get(ident); w != nil {
		w.Release()
	}
}

// StepWorking is Working (availability checks, lookup, usability) and Release.
func StepWorking(s *Service, ident string) error {
	w, err := s.Working(ident, fault.SubjectKey, fault.SideNone)
	if err != nil {
		return err
	}
	w.Release()
	return nil
}

// StepPeek is peekWorking alone.
func StepPeek(s *Service, ident string) { _, _ = s.peekWorking(ident) }

// StepPeekParams is peekWorking and symmetricParams (key-use check, mode,
// padding, IV).
func StepPeekParams(s *Service, ident string, a DataCipher) error {
	w, err := s.peekWorking(ident)
	if w == nil {
		return err
	}
	_, _, _, err = symmetricParams(w, fault.SubjectKey, fault.SideNone, a.Symmetric, true)
	return err
}

// PreparedBlocks is a resolved symmetric cipher, for appendBlocks alone.
type PreparedBlocks struct{ c blockCrypt }

// PrepareBlocks resolves a for the cached key ident.
func PrepareBlocks(s *Service, ident string, a DataCipher) (*PreparedBlocks, error) {
	w, err := s.peekWorking(ident)
	if w == nil {
		return nil, err
	}
	m, iv, pkcs7, err := symmetricParams(w, fault.SubjectKey, fault.SideNone, a.Symmetric, true)
	if err != nil {
		return nil, err
	}
	return &PreparedBlocks{blockCrypt{b: w.Block, m: m, iv: iv, enc: true, pkcs7: pkcs7}}, nil
}

// Append is appendBlocks.
func (p *PreparedBlocks) Append(dst, data []byte) ([]byte, error) { return p.c.appendCrypt(dst, data) }

// FastCBC is peekWorking and fastCBC (enc: EncryptData, else
// DecryptData); ok reports whether fastCBC took the request.
func FastCBC(s *Service, dst []byte, ident string, c *SymmetricCipher, data []byte, enc bool) ([]byte, KeyUsed, bool) {
	w, _ := s.peekWorking(ident)
	if w == nil {
		return dst, KeyUsed{}, false
	}
	out, ok := fastCBC(w, dst, c, data, enc)
	if !ok {
		return out, KeyUsed{}, false
	}
	return out, KeyUsed{KeyARN: w.ARN, KCV: w.Record.KCV}, true
}

// AppendDataGeneral is appendData without fastCBC: appendParams for a key
// peekWorking finds, appendData for any other.
func AppendDataGeneral(s *Service, dst []byte, ident string, a DataCipher, data []byte, enc bool) ([]byte, KeyUsed, error) {
	if w, _ := s.peekWorking(ident); w != nil && a.Symmetric != nil {
		return appendParams(w, dst, a.Symmetric, data, enc)
	}
	return s.appendData(dst, ident, nil, a, data, enc)
}

// PreparedFast is a cached key found by peekWorking, for fastCBC alone.
type PreparedFast struct{ w *WorkingKey }

// PrepareFast finds the cached key ident.
func PrepareFast(s *Service, ident string) (*PreparedFast, error) {
	w, err := s.peekWorking(ident)
	if w == nil {
		return nil, fmt.Errorf("key %s not cached: %w", ident, err)
	}
	return &PreparedFast{w}, nil
}

// Encrypt is fastCBC's encryption; ok reports whether it took the request.
func (p *PreparedFast) Encrypt(dst []byte, c *SymmetricCipher, data []byte) ([]byte, bool) {
	return fastCBC(p.w, dst, c, data, true)
}
