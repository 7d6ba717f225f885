// Package sqlmigrations evolves a live Capture-Spine PostgreSQL database towards the
// run-tracking kernel's schema while the Python application keeps reading and writing
// it.
//
// Migrations are versioned SQL files embedded in the binary (migrations/NNNN_name.up.sql
// and .down.sql). A Migrator applies them in order under a session advisory lock. Each
// step runs in one transaction together with its row in the migrations table, except
// a file whose first line is
//
//	-- spine:no-transaction
//
// (CREATE or DROP INDEX CONCURRENTLY): it holds exactly one statement, runs outside
// any transaction, and its row is recorded only once the statement succeeded. Every
// step is convergent: after any failure, running Up (or Down) again finishes the job
// without hand repair; an INVALID index left by a failed concurrent build is dropped
// and rebuilt.
//
// The steps and the strongest lock each takes on executions:
//
//	0001 add RunRecord columns (+ execution_events.source)  ACCESS EXCLUSIVE, catalog only
//	0002 CHECK kind, priority NOT VALID                     ACCESS EXCLUSIVE, catalog only
//	0003 VALIDATE both constraints (scans)                  SHARE UPDATE EXCLUSIVE
//	0004 unique index on idempotency_key, CONCURRENTLY      SHARE UPDATE EXCLUSIVE
//	0005 index on parent_run_id, CONCURRENTLY               SHARE UPDATE EXCLUSIVE
//	0006 index on (created_at, execution_id), CONCURRENTLY  SHARE UPDATE EXCLUSIVE
//
// What the package must never do:
//   - take a long exclusive lock: every statement runs under lock_timeout and, when it
//     cannot get its lock quickly, gives up, lets the application's queries through
//     and is retried with backoff, instead of queueing behind a long reader with
//     everyone else queued behind it; an ACCESS EXCLUSIVE step only changes the
//     catalog (constant defaults, NOT VALID constraints) and anything that scans or
//     builds runs under SHARE UPDATE EXCLUSIVE, which reads and writes do not wait on;
//   - run a destructive step without being asked: only Down drops anything, and only
//     as far as the caller's target says; Up never drops data.
//
// The package knows Capture-Spine only through its SQL files, and refuses a database
// without an executions table.
package sqlmigrations
