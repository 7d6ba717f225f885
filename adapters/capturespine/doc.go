// Package capturespine translates Capture-Spine's records into spine-core's
// and back: an executions row (Execution) to and from a core.RunRecord, a
// legacy jobs row (Job) into the execution phase 3 makes of it, and the
// Celery tasks that bypass Capture-Spine's Dispatcher (the bypass catalog)
// into WorkSpecs.
//
// Every translation is declarative and refuses what it does not know: a
// status, job type or task missing from a mapping is an error that names the
// value and the mapping entry that would fix it, never a guess. The mappings
// that phase 3 runs inside PostgreSQL are generated from the same Go values,
// so the SQL and the Go side cannot drift (the tests compare them row by row).
//
// The package must never talk to a database or a broker itself: callers
// (core's Postgres ledger, spine-migrate, the side-car) do the I/O.
package capturespine
