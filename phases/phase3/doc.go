// Package phase3 is phase 3 of the migration path: it consolidates
// Capture-Spine's legacy jobs table into executions online, while the Celery
// tasks keep writing jobs.
//
//   - PlanCopy (read-only) counts jobs per type and status with what each
//     maps to, refuses values the mapping does not know (naming the value
//     and the mapping-file entry that fixes it), reports the overlaps (jobs
//     whose Celery task id an execution already carries) and estimates the
//     copy from a short measured, read-only sample.
//   - Copy installs a trigger on jobs first, then copies every job up to the
//     largest id seen once the trigger was in place, in keyset batches,
//     mapping in SQL (capturespine.JobMapping.SQL, the same mapping as the Go
//     adapter), each batch committed with its checkpoint. Several batches
//     run side by side (CopyWorkers), over ranges that share no lock, and
//     commit one at a time in id order. Interrupted at any instant it
//     resumes exactly. The trigger carries inserts, updates and
//     deletes on jobs into executions during and after the copy; a
//     statement trigger does the same for a TRUNCATE of jobs, which fires
//     no row trigger.
//   - Verify compares, from one snapshot, per-chunk hashes of the mapped
//     jobs with the executions that stand for them and names every range
//     that differs; Repair re-copies those ranges. Its workers share the
//     job ids and executions' heap blocks, and add up their sums.
//     Executions that name no job are counted apart (orphans).
//   - Cutover verifies, then under a short lock renames jobs to
//     jobs_retired, drops the triggers and can leave a read-only view named
//     jobs over executions; Rollback returns the database to its state
//     before phase 3 (until Finalize, which drops jobs_retired).
//   - Status says where phase 3 stands; SetControl pauses, resumes or
//     re-rates a running copy, as any connection can through the control row.
//
// Overlaps are linked, never duplicated: a job whose celery_task_id is the
// backend_task_id of an execution phase 3 did not write (a "native"
// execution) gets no execution of its own; the native execution lists the
// job's id in metadata.legacy_job_ids instead, which rollback removes.
//
// Phase 3's own tables are named spine_phase3_* (phase 1's rollback refuses
// while one exists). Nothing here ever changes a jobs row, and an execution
// Capture-Spine wrote only ever gains or loses metadata.legacy_job_ids.
package phase3
