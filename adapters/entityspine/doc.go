// Package entityspine puts EntitySpine's data refreshes and syncs under
// spine-core: its results become what a run records, its units of work a
// WorkSpec catalog, its Go handlers tracked runs, and its Celery beat
// messages (entityspine.tasks.dispatch_refresh) WorkSpecs the bridge can run.
//
// # Results: two shapes, told apart by their fields
//
// RefreshResult and SyncResult exist in two layouts, and both are read:
//
//   - documented (spine-core's integration guide): RefreshResult{source,
//     loaded_count, updated_count, error_count, duration_seconds};
//     SyncResult{synced_count, ...}, whose error_count and duration_seconds
//     are honoured when present, by analogy;
//   - shipped (entity-spine's code): RefreshResult{source, started_at,
//     completed_at, records_fetched, new_entities, new_claims,
//     updated_claims, skipped_duplicates, errors}; SyncResult{started_at,
//     completed_at (null while unfinished), entities_synced,
//     relationships_synced, errors, warnings}.
//
// A value has a shape when every field of that shape is present (all of them:
// dataclasses.asdict and to_dict always write them all). Having neither
// shape's fields, or both, is a *ShapeError naming what each shape lacks.
// Members that are not fields are kept in Extra and written back, so the
// result JSON a run records loses nothing. Counts are exact int64s; times go
// through core.ParseTime (a naive time is UTC) and are written back in UTC.
//
// The result JSON of a shipped value adds what Python derives, unless the
// value already carries it (then it is kept as given): duration_seconds
// (completed_at - started_at) and success_rate (1 - len(errors) /
// records_fetched, 1.0 when nothing was fetched) for a refresh;
// duration_seconds (0 while completed_at is null) and success (no errors)
// for a sync, as SyncResult.to_dict writes them. The documented shape adds
// nothing.
//
// # Status rule
//
// A result without errors completes its run. A result with errors fails its
// run when nothing succeeded, and otherwise completes it "with warnings":
// status completed, the errors kept in the result JSON, and the run's last
// progress event saying so. What succeeded is, per shape:
//
//   - shipped refresh: records_fetched - len(errors) (each fetched record is
//     new, updated, skipped as known, or one error; a failed fetch is one
//     error and no records);
//   - documented refresh: loaded_count + updated_count, errors error_count;
//   - shipped sync: entities_synced + relationships_synced;
//   - documented sync: synced_count, errors error_count.
//
// A failed run's error is a *ResultError (error_type RefreshFailed or
// SyncFailed) with the first error texts. It is retried like any failure:
// a source that could not be fetched may well answer next time. Core records
// no result on a failed run, so the texts are what it keeps.
//
// # Catalog and beat dispatch
//
// Spec maps the guide's names to WorkSpecs: tasks refresh_sec, refresh_gleif,
// refresh_all, sync and batch_resolve (which needs params.queries), pipeline
// multi_source_load, workflow daily_refresh. BeatSpec turns a dispatch_refresh
// message into the spec of its task_name with trigger_source "schedule".
//
// # What the package must never do
//
//   - Never guess: a result of no known shape, a name not in the catalog, a
//     beat message whose arguments dispatch_refresh would refuse are errors
//     that say why, never a default.
//   - Never drop or round what a result reports: unknown members are kept,
//     counts are never floats.
//   - Never talk to EntitySpine, Celery or a store itself: it converts, and
//     core records. It depends on core and celerybridge, never the reverse.
package entityspine
