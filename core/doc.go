// Package core is the spine-core kernel in Go: the contracts of Python
// spine-core (WorkSpec, RunRecord, RunStatus, RunEvent, handler registry,
// executors, ledger, dispatcher) in Go idiom.
//
// A Dispatcher records every unit of work as a RunRecord in a Ledger, hands it
// to an Executor, and moves it through the enforced RunStatus state machine
// as the executor reports back. Idempotency keys are enforced by the ledger
// itself, so two dispatchers sharing one store never create two runs for one
// key.
//
// core must never know about Celery, Redis or Capture-Spine: adapters and the
// Celery bridge depend on core, never the reverse. The PostgreSQL ledger lives
// in the subpackage pgledger; the conformance tests every Ledger must pass
// live in ledgertest.
package core
