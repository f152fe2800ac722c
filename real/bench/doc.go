// Package bench holds end-to-end benchmarks of the real runtime that span several of its
// packages: a worker (llm-worker-rbee with the CPU engine), a queen (with its public HTTP
// gateway) and a client, each in its own real.Runtime with its own transport and loopback
// listener, as separate OS processes would be. The package has no API: see its _test.go files
// and run them with
//
//	go test -run XXX -bench . -benchtime 200x ./real/bench/
package bench
