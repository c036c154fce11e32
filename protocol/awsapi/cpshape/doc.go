// Package cpshape owns the wire types of payhsm's AWS Payment Cryptography
// control-plane API (awsJson1_0, payment-cryptography-2021-09-14): one Go
// struct per model structure with exact-name JSON decoding, Validate methods
// that enforce the model's constraints (required members, lengths, patterns,
// enums, ranges, unions) with AWS-style messages that never echo sensitive
// values, the operation table and the error shapes. Everything in
// shapes_gen.go is generated from the official model by tools/apigen; change
// the generator, not the output.
package cpshape

//go:generate go run ../../../tools/apigen -model ../../../tools/apigen/testdata/payment-cryptography-2021-09-14.json -pkg cpshape -out shapes_gen.go
