package cardverify

import (
	"errors"
	"fmt"
)

// DCVV computes the three-digit Visa dynamic card verification value (dCVV)
// of a contactless magnetic-stripe-mode transaction. iccKey is the card's
// 16-byte ICC master key, derived by the caller from the issuer master key
// (EMV Book 2 A1.4, hsm/emv). The value is the CVV algorithm under iccKey
// with the ATC in place of the first four PAN digits: the data are the ATC
// as four hexadecimal digits, the PAN without its first four digits, the
// expiry date and the service code (jPOS JCESecurityModule.calculatedCVV;
// the same construction in spochic/gep3 emv/dsc.py generate_dcvv).
func DCVV(iccKey []byte, pan, expiry, serviceCode string, atc [2]byte) (string, error) {
	return DCVVDigits(iccKey, pan, expiry, serviceCode, atc, 3)
}

// DCVVDigits is DCVV with n (1..16) digits: the CVV algorithm's
// decimalisation carried on past the third digit (the n-digit value begins
// with the (n-1)-digit one), as CVV and IBM CCA's CVV Generate (CVV-1 to
// CVV-5) do for longer values.
func DCVVDigits(iccKey []byte, pan, expiry, serviceCode string, atc [2]byte, n int) (string, error) {
	if len(iccKey) != 16 {
		return "", errKey
	}
	if len(pan) < 5 || len(pan) > 19 || !digits(pan) {
		return "", errors.New("cardverify: PAN must be 5 to 19 digits")
	}
	if len(expiry) != 4 || !digits(expiry) {
		return "", errors.New("cardverify: expiry date must be 4 digits")
	}
	if len(serviceCode) != 3 || !digits(serviceCode) {
		return "", errors.New("cardverify: service code must be 3 digits")
	}
	if n < 1 || n > 16 {
		return "", fmt.Errorf("cardverify: %d digits requested", n)
	}
	return cvv(iccKey, fmt.Sprintf("%02X%02X", atc[0], atc[1])+pan[4:]+expiry+serviceCode, n)
}
