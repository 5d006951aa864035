//go:build race

package encrypt

// raceEnabled: the race detector drops sync.Pool entries at random, so
// allocation counts measured under it say nothing about steady state.
const raceEnabled = true
