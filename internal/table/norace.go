//go:build !race

package table

// raceEnabled is set in race-detector builds (see race.go).
const raceEnabled = false
