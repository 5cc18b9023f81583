//go:build !race

package ratelimit_test

// raceDetector is true under -race; see race_on_test.go.
const raceDetector = false
