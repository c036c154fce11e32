//go:build !race

package ops_test

// raceEnabled: the tests run under the race detector.
const raceEnabled = false
