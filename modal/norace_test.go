//go:build !race

package modal_test

const raceEnabled = false
