//go:build race

package clientmatrix

func init() { raceEnabled = true }
