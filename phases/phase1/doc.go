// Package phase1 is phase 1 of the migration path: it aligns Capture-Spine's
// live executions table with spine-core's run model online, while the Python
// writers keep inserting and updating it.
//
//   - PlanApply (read-only) inspects the tables, the distinct status, lane
//     and trigger_source values and how each maps, and lists what Apply will
//     run with the lock each statement takes and an estimate. It refuses a
//     database that is not Capture-Spine's, and values that cannot map.
//   - Apply runs the embedded migrations (sqlmigrations: lock_timeout,
//     retries, indexes built concurrently), then backfills priority from the
//     lane in keyset batches, each committed with its checkpoint, so an
//     interrupted apply resumes. Of the derived RunRecord fields only
//     priority is stored apart: kind is the column's constant default, and
//     attempt, external_ref and metadata.feed_id are read by the ledger from
//     retry_count, backend_task_id and feed_id. Rows Capture-Spine inserts
//     from then on get their priority from migration 0007's trigger, which
//     fills a priority the writer did not give (see its file for why a
//     trigger and not a default).
//   - Verify reads every row through the Postgres ledger and reports any that
//     is not a valid RunRecord, with its id and why.
//   - Rollback removes everything phase 1 added (columns, constraints,
//     indexes, the trigger, the checkpoint and migrations tables), refusing
//     while a later phase's tables exist or, unless told to discard it, while
//     rows hold data only phase 1's columns can keep.
//
// Apply and Rollback hold an advisory lock so two operators cannot
// interleave them. Nothing here ever rewrites a column Capture-Spine owns.
package phase1
