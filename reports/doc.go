// Package reports turns runs into folders a person can read in a minute: a failure folder
// holds the scenario file, the verdict, the trace as JSON lines, porcupine's history
// visualisation for a linearizability failure, and the one command that replays it.
package reports
