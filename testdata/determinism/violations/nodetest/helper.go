// Package nodetest is skipped by the walk, as orch/node/nodetest is.
package nodetest

func helper() {
	go helper()
}
