// Package dpshape owns the wire types of payhsm's AWS Payment Cryptography
// data-plane API (restJson1, payment-cryptography-data-2022-02-03): one Go
// struct per model structure with exact-name JSON decoding, Validate methods
// that enforce the model's constraints (required members, lengths, patterns,
// enums, ranges, unions) with AWS-style messages that never echo sensitive
// values such as PANs, PIN blocks or keys, the operation table with HTTP
// bindings and URI labels, and the error shapes. Everything in shapes_gen.go
// is generated from the official model by tools/apigen; change the
// generator, not the output.
package dpshape

//go:generate go run ../../../tools/apigen -model ../../../tools/apigen/testdata/payment-cryptography-data-2022-02-03.json -pkg dpshape -out shapes_gen.go
