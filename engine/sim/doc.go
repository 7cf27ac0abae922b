// Package sim runs the whole engine — resolve, persist, reply, tail, status
// index, recovery — on simulated time with seeded randomness, on
// persist/memlog with injected faults, and checks after every run that
// what it acknowledged is serializable, durable and exactly once. The
// simulator is its tests (sim_test.go): see docs/architecture.md
// ("Simulation") for how to run and read it.
//
// What a seed replays: the simulated clock, every random choice of the
// driver (configuration, client transactions, faults, crashes, restarts,
// second leaders, lost answers) and the engine's own randomness (leader
// and request ids, through its Env). What it does not: the interleaving of
// the engine's stage goroutines and append workers, which the Go runtime
// schedules. So a seed replays the same workload and fault schedule, and
// the engine's batching may differ from run to run; a failure that depends
// on one interleaving may need the seed run a few times (SIM_REPEAT).
package sim
