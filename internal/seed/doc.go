// Package seed builds Capture-Spine databases for tests and demos: it loads the
// project's model of Capture-Spine's schema (testdata/capturespine/schema.sql) and
// fills it with deterministic, deliberately awkward rows: every status, lane, trigger
// source and job type, NULLs wherever a column allows them, unicode and nested JSON,
// and jobs that share a Celery task id with an execution.
//
// The same Options always produce the same rows, so a test can assert exact counts
// and hashes. The package only ever writes to the database it is handed; it must
// never be used against a real Capture-Spine deployment, and it must not grow
// knowledge of how the migrator maps these rows: the fixture describes the legacy
// system, not our reading of it.
package seed
