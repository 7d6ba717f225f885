// Package pgledger is core's Ledger on PostgreSQL (pgx/v5), over the
// unified run tables: Capture-Spine's executions and execution_events, with
// the RunRecord columns sqlmigrations adds.
//
// Every write is a single SQL statement that changes the run and records the
// events describing the change together. Idempotency keys are unique by
// index, so concurrent submits from any number of connections or processes
// create one run per key; status changes are compare-and-set on the current
// status, so two writers cannot break the state machine.
//
// The Python code of Capture-Spine keeps writing these tables during the
// migration: the package must never rely on a row having been written by
// itself, and never take locks beyond the rows it changes.
package pgledger
