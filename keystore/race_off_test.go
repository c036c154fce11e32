//go:build !race

package keystore

// raceEnabled: the tests run under the race detector.
const raceEnabled = false
