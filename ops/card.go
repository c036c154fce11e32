package ops

import (
	"fmt"

	"payhsm/fault"
	"payhsm/hsm/cardverify"
	"payhsm/hsm/emv"
	"payhsm/keyspec"
)

// CardValidationKind is a card validation data type (the member of the
// AWS CardGenerationAttributes / CardVerificationAttributes union).
type CardValidationKind int

const (
	CardCVV1                CardValidationKind = iota + 1 // CVV/CVC, iCVV (999), CAVV v7
	CardCVV2                                              // CVV2/CVC2 (service code 000)
	CardHolderVerification                                // CardHolderVerificationValue (E6)
	CardAmexCSC1                                          // AmexCardSecurityCodeVersion1 (classic CSC)
	CardAmexCSC2                                          // AmexCardSecurityCodeVersion2 (enhanced CSC; iCSC, 3-D Secure AEVV)
	CardDynamicCode                                       // DynamicCardVerificationCode (Mastercard DCVC3, E4)
	CardDynamicValue                                      // DynamicCardVerificationValue (Visa dCVV, E6, option A ICC key)
	CardDiscoverDynamicCode                               // DiscoverDynamicCardVerificationCode (verify only)
)

// cardKindNames name the types in messages.
var cardKindNames = map[CardValidationKind]string{
	CardCVV1: "CardVerificationValue1", CardCVV2: "CardVerificationValue2",
	CardHolderVerification: "CardHolderVerificationValue", CardAmexCSC1: "AmexCardSecurityCodeVersion1",
	CardAmexCSC2: "AmexCardSecurityCodeVersion2", CardDynamicCode: "DynamicCardVerificationCode",
	CardDynamicValue: "DynamicCardVerificationValue", CardDiscoverDynamicCode: "DiscoverDynamicCardVerificationCode",
}

// CardValidationInput is the input of Generate- and VerifyCardValidationData.
type CardValidationInput struct {
	KeyIdentifier string
	PAN           string
	Kind          CardValidationKind
	ExpiryDate    string // 4 digits, in the issuer's format
	ServiceCode   string // 3 digits
	UN            []byte // 1 to 4 bytes, right-justified
	PSN           string // 2 digits
	ATC           []byte // 2 bytes
	TrackData     []byte
	Length        int // ValidationDataLength (3..5); 0 = 3; the n-digit CVV and dCVV continue the 3-digit value's decimalisation
}

// digits checks that the attribute subj holds exactly n decimal digits.
func digits(subj fault.Subject, v string, n int) error {
	if len(v) != n || !isDigits(v) {
		return about(subj, fault.SideNone, "must be %d digits", n)
	}
	return nil
}

// card-verification rules (guide: Valid keys for cryptographic operations,
// GenerateCardData and VerifyCardData).
func (s *Service) cardKey(in CardValidationInput, verify bool) (_ *WorkingKey, err error) {
	const subj, side = fault.SubjectKey, fault.SideNone
	w, err := s.Working(in.KeyIdentifier, subj, side)
	if err != nil {
		return nil, err
	}
	defer releaseOnError(w, &err)
	uses, ok := cardUses[in.Kind]
	if !ok {
		return nil, about(fault.SubjectCardAttributes, side, "unknown card validation type")
	}
	u := uses[0]
	if verify {
		u = uses[1]
	}
	if u == keyspec.UseNone {
		return nil, about(fault.SubjectCardAttributes, side, "%s can only be verified", cardKindNames[in.Kind])
	}
	if err := RequireUse(w, u, subj, side); err != nil {
		return nil, err
	}
	return w, nil
}

// cardUses are the key-use rules (keyspec/use.go) of each card validation
// method: generation, verification (UseNone: the method is verify-only).
var cardUses = map[CardValidationKind][2]keyspec.Use{
	CardCVV1:                {keyspec.UseGenerateCardCVV1, keyspec.UseVerifyCardCVV1},
	CardCVV2:                {keyspec.UseGenerateCardCVV2, keyspec.UseVerifyCardCVV2},
	CardAmexCSC1:            {keyspec.UseGenerateCardAmexCSC1, keyspec.UseVerifyCardAmexCSC1},
	CardAmexCSC2:            {keyspec.UseGenerateCardAmexCSC2, keyspec.UseVerifyCardAmexCSC2},
	CardHolderVerification:  {keyspec.UseGenerateCardHolderVerification, keyspec.UseVerifyCardHolderVerification},
	CardDynamicValue:        {keyspec.UseGenerateCardDynamicValue, keyspec.UseVerifyCardDynamicValue},
	CardDynamicCode:         {keyspec.UseGenerateCardDynamicCode, keyspec.UseVerifyCardDynamicCode},
	CardDiscoverDynamicCode: {keyspec.UseNone, keyspec.UseVerifyCardDiscoverDynamicCode},
}

// cardValue computes the validation data of in (length digits) under w.
func cardValue(w *WorkingKey, in CardValidationInput, length int) (string, error) {
	const side = fault.SideNone
	if len(in.PAN) < 12 || len(in.PAN) > 19 || !isDigits(in.PAN) {
		return "", about(fault.SubjectPAN, side, "must be 12 to 19 digits")
	}
	switch in.Kind {
	case CardCVV1, CardCVV2:
		sc := in.ServiceCode
		if in.Kind == CardCVV2 {
			sc = "000"
		}
		if err := digits(fault.SubjectExpiryDate, in.ExpiryDate, 4); err != nil {
			return "", err
		}
		if err := digits(fault.SubjectServiceCode, sc, 3); err != nil {
			return "", err
		}
		v, err := cardverify.CVVCiphers(w.Left, w.Block, in.PAN, in.ExpiryDate, sc, length)
		if err != nil {
			return "", fault.Internalf("CVV", err)
		}
		return v, nil
	case CardAmexCSC1, CardAmexCSC2:
		if err := digits(fault.SubjectExpiryDate, in.ExpiryDate, 4); err != nil {
			return "", err
		}
		if len(in.PAN) != 15 || (in.PAN[:2] != "34" && in.PAN[:2] != "37") {
			return "", about(fault.SubjectPAN, side, "must be an American Express PAN for %s: 15 digits beginning with 34 or 37", cardKindNames[in.Kind])
		}
		v := cardverify.AmexCSC1
		if in.Kind == CardAmexCSC2 {
			v = cardverify.AmexCSC2
			if err := digits(fault.SubjectServiceCode, in.ServiceCode, 3); err != nil {
				return "", err
			}
		}
		csc, err := cardverify.AmexCSC(w.Block, v, in.PAN, in.ExpiryDate, in.ServiceCode, length)
		if err != nil {
			return "", fault.Internalf("Amex CSC", err)
		}
		return csc, nil
	case CardDynamicCode:
		if err := digits(fault.SubjectPSN, in.PSN, 2); err != nil {
			return "", err
		}
		if err := fixed(fault.SubjectATC, side, in.ATC, 2); err != nil {
			return "", err
		}
		if len(in.UN) == 0 || len(in.UN) > 4 {
			return "", about(fault.SubjectUnpredictableNumber, side, "must be 1 to 4 bytes")
		}
		var un [4]byte
		copy(un[4-len(in.UN):], in.UN)
		if len(in.TrackData) == 0 {
			return "", about(fault.SubjectTrackData, side, "is required")
		}
		if length != 3 {
			// The guide (Mastercard DCVC3): "The service expects a 3 digit
			// DCVC3"; a longer stored value is verified by its 3 rightmost digits.
			return "", about(fault.SubjectValidationDataLength, side, "must be 3 for DynamicCardVerificationCode: verify the 3 rightmost digits of a longer CVC3")
		}
		icc, err := emv.ICCMasterKeyBlock(w.Block, emv.OptionA, in.PAN, in.PSN)
		if err != nil {
			return "", fault.Internalf("ICC key derivation", err)
		}
		defer clear(icc)
		v, err := cardverify.CVC3(icc, in.TrackData, un, [2]byte(in.ATC))
		if err != nil {
			return "", fault.Internalf("CVC3", err)
		}
		return fmt.Sprintf("%03d", v%1000), nil
	case CardDynamicValue:
		if err := digits(fault.SubjectExpiryDate, in.ExpiryDate, 4); err != nil {
			return "", err
		}
		if err := digits(fault.SubjectServiceCode, in.ServiceCode, 3); err != nil {
			return "", err
		}
		if err := digits(fault.SubjectPSN, in.PSN, 2); err != nil {
			return "", err
		}
		if err := fixed(fault.SubjectATC, side, in.ATC, 2); err != nil {
			return "", err
		}
		icc, err := emv.ICCMasterKeyBlock(w.Block, emv.OptionA, in.PAN, in.PSN)
		if err != nil {
			return "", fault.Internalf("ICC key derivation", err)
		}
		defer clear(icc)
		v, err := cardverify.DCVVDigits(icc, in.PAN, in.ExpiryDate, in.ServiceCode, [2]byte(in.ATC), length)
		if err != nil {
			return "", fault.Internalf("dCVV", err)
		}
		return v, nil
	}
	return "", about(fault.SubjectCardAttributes, side, "%s is not supported by this appliance: %s", cardKindNames[in.Kind], unsupportedCardKinds[in.Kind])
}

// unsupportedCardKinds says why a card validation type is refused: each is
// a scheme-proprietary algorithm with no public description or known
// answers this appliance could be checked against (docs/card-algorithms.md
// lists what was searched).
var unsupportedCardKinds = map[CardValidationKind]string{
	CardHolderVerification:  "the scheme's CAVV algorithm on ATC, unpredictable number and PAN sequence number is not published",
	CardDiscoverDynamicCode: "the Discover dynamic CVC algorithm is not published",
}

func cardLength(n int) (int, error) {
	if n == 0 {
		return 3, nil
	}
	if n < 3 || n > 5 {
		return 0, about(fault.SubjectValidationDataLength, fault.SideNone, "must be between 3 and 5")
	}
	return n, nil
}

// GenerateCardValidationData computes CVV-style card validation data.
func (s *Service) GenerateCardValidationData(in CardValidationInput) (*CryptoResult, error) {
	n, err := cardLength(in.Length)
	if err != nil {
		return nil, err
	}
	w, err := s.cardKey(in, false)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	v, err := cardValue(w, in, n)
	if err != nil {
		return nil, err
	}
	return &CryptoResult{KeyARN: w.ARN, KCV: w.KCV(), Value: v}, nil
}

// VerifyCardValidationData verifies card validation data; a mismatch is a
// VerificationFailed fault with reason INVALID_VALIDATION_DATA.
func (s *Service) VerifyCardValidationData(in CardValidationInput, value string) (*CryptoResult, error) {
	if len(value) < 3 || len(value) > 5 || !isDigits(value) {
		return nil, about(fault.SubjectValidationData, fault.SideNone, "must be 3 to 5 digits")
	}
	w, err := s.cardKey(in, true)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	want, err := cardValue(w, in, len(value))
	if err != nil {
		// The length to compute is the given value's: its fault is about the value.
		if f := fault.As(err); f.Subject == fault.SubjectValidationDataLength {
			return nil, about(fault.SubjectValidationData, fault.SideNone, "%s", f.Message)
		}
		return nil, err
	}
	if !cardverify.Equal(want, value) {
		return nil, fault.Mismatch(fault.ReasonInvalidValidationData, "Card validation data verification failed")
	}
	return &CryptoResult{KeyARN: w.ARN, KCV: w.KCV()}, nil
}
