package ops

import (
	"fmt"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/cardverify"
	"payhsm/hsm/emv"
	"payhsm/keyspec"
)

// CardValidationKind is the member of the CardGenerationAttributes /
// CardVerificationAttributes union.
type CardValidationKind int

const (
	CardCVV1                CardValidationKind = iota + 1 // CVV/CVC, iCVV (999), CAVV v7
	CardCVV2                                              // CVV2/CVC2 (service code 000)
	CardHolderVerification                                // CardHolderVerificationValue (E6)
	CardAmexCSC1                                          // AmexCardSecurityCodeVersion1
	CardAmexCSC2                                          // AmexCardSecurityCodeVersion2
	CardDynamicCode                                       // DynamicCardVerificationCode (Mastercard DCVC3, E4)
	CardDynamicValue                                      // DynamicCardVerificationValue (Visa dCVV, E6, option A ICC key)
	CardDiscoverDynamicCode                               // DiscoverDynamicCardVerificationCode (verify only)
)

var cardKindNames = map[CardValidationKind]string{
	CardCVV1: "CardVerificationValue1", CardCVV2: "CardVerificationValue2",
	CardHolderVerification: "CardHolderVerificationValue", CardAmexCSC1: "AmexCardSecurityCodeVersion1",
	CardAmexCSC2: "AmexCardSecurityCodeVersion2", CardDynamicCode: "DynamicCardVerificationCode",
	CardDynamicValue: "DynamicCardVerificationValue", CardDiscoverDynamicCode: "DiscoverDynamicCardVerificationCode",
}

// CardValidationInput is the input of Generate- and VerifyCardValidationData.
// Field is the request member holding the attributes ("GenerationAttributes"
// or "VerificationAttributes"), used in error messages.
type CardValidationInput struct {
	KeyIdentifier string
	PAN           string
	Kind          CardValidationKind
	Field         string
	ExpiryDate    string // 4 digits, in the issuer's format
	ServiceCode   string // 3 digits
	UN            string // hex
	PSN           string // 2 digits
	ATC           string // hex
	TrackData     string // hex
	Length        int    // ValidationDataLength (3..5); 0 = 3
}

func (in CardValidationInput) attr(member string) string {
	return in.Field + "." + cardKindNames[in.Kind] + "." + member
}

// digits checks that the attribute member holds exactly n decimal digits.
func (in CardValidationInput) digits(member, v string, n int) error {
	if len(v) != n || !isDigits(v) {
		return fault.FieldInvalid(in.attr(member), "must be %d digits", n)
	}
	return nil
}

// card-verification rules (guide: Valid keys for cryptographic operations,
// GenerateCardData and VerifyCardData).
func (s *Service) cardKey(in CardValidationInput, verify bool) (*WorkingKey, error) {
	w, err := s.Working(in.KeyIdentifier, "KeyIdentifier")
	if err != nil {
		return nil, err
	}
	what := "GenerateCardValidationData"
	cvkMode := func(m keyspec.ModesOfUse) bool { return m.Generate }
	if verify {
		what = "VerifyCardValidationData"
		cvkMode = func(m keyspec.ModesOfUse) bool { return m.Verify }
	}
	what += " with " + cardKindNames[in.Kind]
	switch in.Kind {
	case CardCVV1, CardCVV2:
		err = Require(w, "KeyIdentifier", what, []keyspec.KeyUsage{keyspec.C0}, tdes2, cvkMode)
	case CardAmexCSC1, CardAmexCSC2:
		err = Require(w, "KeyIdentifier", what, []keyspec.KeyUsage{keyspec.C0}, []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key}, cvkMode)
	case CardHolderVerification, CardDynamicValue:
		err = Require(w, "KeyIdentifier", what, []keyspec.KeyUsage{keyspec.E6}, tdes2, deriveKey)
	case CardDynamicCode:
		err = Require(w, "KeyIdentifier", what, []keyspec.KeyUsage{keyspec.E4}, tdes2, deriveKey)
	case CardDiscoverDynamicCode:
		if !verify {
			return nil, fault.FieldInvalid(in.Field, "DiscoverDynamicCardVerificationCode can only be verified")
		}
		err = Require(w, "KeyIdentifier", what, []keyspec.KeyUsage{keyspec.E6}, tdes2, deriveKey)
	default:
		return nil, fault.FieldInvalid(in.Field, "unknown card validation type")
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// cardValue computes the validation data of in (length digits) under w.
func cardValue(w *WorkingKey, in CardValidationInput, length int) (string, error) {
	if len(in.PAN) < 12 || len(in.PAN) > 19 || !isDigits(in.PAN) {
		return "", fault.FieldInvalid("PrimaryAccountNumber", "must be 12 to 19 digits")
	}
	switch in.Kind {
	case CardCVV1, CardCVV2:
		sc := in.ServiceCode
		if in.Kind == CardCVV2 {
			sc = "000"
		}
		if err := in.digits("CardExpiryDate", in.ExpiryDate, 4); err != nil {
			return "", err
		}
		if err := in.digits("ServiceCode", sc, 3); err != nil {
			return "", err
		}
		if length != 3 {
			return "", fault.FieldInvalid("ValidationDataLength", "must be 3 for %s", cardKindNames[in.Kind])
		}
		v, err := cardverify.CVVCiphers(w.Left, w.Block, in.PAN, in.ExpiryDate, sc, length)
		if err != nil {
			return "", fault.Internalf("CVV", err)
		}
		return v, nil
	case CardDynamicCode:
		if err := in.digits("PanSequenceNumber", in.PSN, 2); err != nil {
			return "", err
		}
		atc, err := atcField(in.attr("ApplicationTransactionCounter"), in.ATC)
		if err != nil {
			return "", err
		}
		unb, err := hexField(in.attr("UnpredictableNumber"), in.UN, -1)
		if err != nil || len(unb) == 0 || len(unb) > 4 {
			return "", fault.FieldInvalid(in.attr("UnpredictableNumber"), "must be 2 to 8 hexadecimal digits")
		}
		var un [4]byte
		copy(un[4-len(unb):], unb)
		track, err := hexField(in.attr("TrackData"), in.TrackData, -1)
		if err != nil || len(track) == 0 {
			return "", fault.FieldInvalid(in.attr("TrackData"), "must be hexadecimal track data")
		}
		if length != 3 {
			return "", fault.FieldInvalid("ValidationDataLength", "must be 3 for DynamicCardVerificationCode")
		}
		icc, err := emv.ICCMasterKeyBlock(w.Block, emv.OptionA, in.PAN, in.PSN)
		if err != nil {
			return "", fault.Internalf("ICC key derivation", err)
		}
		defer clear(icc)
		v, err := cardverify.CVC3(icc, track, un, atc)
		if err != nil {
			return "", fault.Internalf("CVC3", err)
		}
		return fmt.Sprintf("%03d", v%1000), nil
	case CardDynamicValue:
		if err := in.digits("CardExpiryDate", in.ExpiryDate, 4); err != nil {
			return "", err
		}
		if err := in.digits("ServiceCode", in.ServiceCode, 3); err != nil {
			return "", err
		}
		if err := in.digits("PanSequenceNumber", in.PSN, 2); err != nil {
			return "", err
		}
		atc, err := atcField(in.attr("ApplicationTransactionCounter"), in.ATC)
		if err != nil {
			return "", err
		}
		if length != 3 {
			return "", fault.FieldInvalid("ValidationDataLength", "must be 3 for DynamicCardVerificationValue")
		}
		icc, err := emv.ICCMasterKeyBlock(w.Block, emv.OptionA, in.PAN, in.PSN)
		if err != nil {
			return "", fault.Internalf("ICC key derivation", err)
		}
		defer clear(icc)
		v, err := cardverify.DCVV(icc, in.PAN, in.ExpiryDate, in.ServiceCode, atc)
		if err != nil {
			return "", fault.Internalf("dCVV", err)
		}
		return v, nil
	}
	return "", fault.FieldInvalid(in.Field, "%s is not supported by this appliance: %s", cardKindNames[in.Kind], unsupportedCardKinds[in.Kind])
}

// unsupportedCardKinds says why a card validation type is refused: each is
// a scheme-proprietary algorithm with no published specification or known
// answers this appliance could be checked against.
var unsupportedCardKinds = map[CardValidationKind]string{
	CardHolderVerification:  "the scheme's CAVV algorithm on ATC, unpredictable number and PAN sequence number is not published",
	CardAmexCSC1:            "the American Express CSC version 1 algorithm is not published",
	CardAmexCSC2:            "the American Express CSC version 2 algorithm is not published",
	CardDiscoverDynamicCode: "the Discover dynamic CVC algorithm is not published",
}

func cardLength(n int) (int, error) {
	if n == 0 {
		return 3, nil
	}
	if n < 3 || n > 5 {
		return 0, fault.FieldInvalid("ValidationDataLength", "must be between 3 and 5")
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
		return nil, fault.FieldInvalid("ValidationData", "must be 3 to 5 digits")
	}
	w, err := s.cardKey(in, true)
	if err != nil {
		return nil, err
	}
	want, err := cardValue(w, in, len(value))
	if err != nil {
		if f := fault.As(err); f.Field == "ValidationDataLength" {
			return nil, fault.FieldInvalid("ValidationData", "%s", strings.TrimPrefix(f.Message, "ValidationDataLength: "))
		}
		return nil, err
	}
	if !cardverify.Equal(want, value) {
		return nil, fault.Mismatch(fault.ReasonInvalidValidationData, "Card validation data verification failed")
	}
	return &CryptoResult{KeyARN: w.ARN, KCV: w.KCV()}, nil
}
