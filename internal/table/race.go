//go:build race

package table

// raceEnabled is set in race-detector builds, where Get takes the read lock: the detector
// would rightly report the lock-free reader's racing loads, which it cannot know are
// validated and discarded when torn (see read.go).
const raceEnabled = true
