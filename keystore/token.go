package keystore

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Pagination tokens are base64url (unpadded, strict) of
//
//	tokenVersion | listing marker | scope | 0x00 | cursor
//
// where scope is the key id a listing is confined to ("" for listings over
// everything) and cursor is the last primary key returned (key id, alias name
// or tag key). The next page starts strictly after the cursor, so a token stays
// valid when records are added or removed between pages.

const tokenVersion = 1

// Listing markers.
const (
	listKeys       byte = 'K'
	listAliases    byte = 'A' // every alias
	listKeyAliases byte = 'B' // aliases of one key; scope is the key id
	listTags       byte = 'T' // tags of one key; scope is the key id
)

// maxTokenLen is the APC NextToken maximum length.
const maxTokenLen = 8192

var tokenEnc = base64.RawURLEncoding.Strict()

func notBase64URL(r rune) bool { return !isBase64URL(r) }

func isBase64URL(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

func encodeToken(list byte, scope, cursor string) string {
	b := make([]byte, 0, 3+len(scope)+len(cursor))
	b = append(b, tokenVersion, list)
	b = append(b, scope...)
	b = append(b, 0)
	b = append(b, cursor...)
	return tokenEnc.EncodeToString(b)
}

// decodeToken returns the cursor in tok, which must be a token of listing list
// confined to scope. "" decodes to "" (the first page).
func decodeToken(tok string, list byte, scope string) (string, error) {
	if tok == "" {
		return "", nil
	}
	if len(tok) > maxTokenLen {
		return "", fmt.Errorf("token longer than %d characters: %w", maxTokenLen, ErrBadToken)
	}
	b, err := tokenEnc.DecodeString(tok)
	if err != nil || strings.ContainsFunc(tok, notBase64URL) { // the decoder skips '\r' and '\n'

		return "", fmt.Errorf("token does not decode: %w", ErrBadToken)
	}
	if len(b) < 3 || b[0] != tokenVersion {
		return "", fmt.Errorf("token has an unknown version: %w", ErrBadToken)
	}
	if b[1] != list {
		return "", fmt.Errorf("token belongs to another listing: %w", ErrBadToken)
	}
	gotScope, cursor, ok := strings.Cut(string(b[2:]), "\x00")
	if !ok || gotScope != scope {
		return "", fmt.Errorf("token belongs to another listing: %w", ErrBadToken)
	}
	if !validName(cursor) || (list == listKeys && !ValidID(cursor)) {
		return "", fmt.Errorf("token has an invalid position: %w", ErrBadToken)
	}
	return cursor, nil
}
