// Package orch holds the rbee orchestrator core: the production logic of queen-rbee, rbee-hive,
// llm-worker-rbee and rbee-keeper, written as sans-IO state machines.
//
// The one rule: the core is deterministic by construction. Code under orch/ never starts
// goroutines, never reads the wall clock, never draws from a global random source and never
// lets map iteration order decide anything. Time, randomness, messages and files all come
// through the node.Env it is handed. TestCoreIsDeterministicByConstruction enforces this.
package orch
