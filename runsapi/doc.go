// Package runsapi is spine-core's runs API as an http.Handler over a
// core.Dispatcher, for a Go gateway to mount beside its own routes, with
// Capture-Spine's read-only executions view of the same rows.
//
// Under Options.Prefix (default /api/v1):
//
//	GET  /runs                     list: kind, name (or pipeline), status, parent_run_id,
//	                               created_after, created_before, limit, cursor
//	POST /runs                     submit a WorkSpec
//	POST /runs/task                submit a task: name, params, priority, metadata, idempotency_key
//	POST /runs/pipeline            submit a pipeline: name, params, lane, metadata, idempotency_key
//	GET  /runs/{run_id}            one run
//	POST /runs/{run_id}/cancel     cancel a pending, queued or running run
//	POST /runs/{run_id}/retry      retry a failed or dead-lettered run as a new run
//	GET  /runs/{run_id}/events     its events, oldest first
//	GET  /runs/{run_id}/children   its child runs, paged like the list
//	GET  /executions               the runs as executions rows: pipeline_name (or pipeline),
//	                               status, kind, parent_run_id, created_after, created_before,
//	                               limit, cursor
//	GET  /executions/{execution_id}
//
// Runs and events are written by core's marshalling: Python's to_dict keys
// plus the spec fields. Executions are written by
// capturespine.FromRunRecord and the Execution's column names.
//
// # Which Python API
//
// spine-core has two runs routers. spine.execution.fastapi
// (create_runs_router, mounted at /api/v1/runs) has the task and pipeline
// conveniences, children, a limit of at most 200 and plain bodies; the
// console's spine.api.routers.runs wraps bodies in {data, page}, allows 500,
// answers 202 and has no children. The contracts describe the first, so its
// paths, field names, defaults and status codes are followed. Errors use the
// console's RFC 7807 ProblemDetail (type, title, status, detail, instance,
// errors[{code, message, field}]), to which FastAPI's {"detail": "…"} is a
// subset, plus a code (NOT_FOUND, VALIDATION_FAILED, INVALID_INPUT,
// CONFLICT, NOT_CANCELLABLE, UNAVAILABLE, …) and, when a run was recorded
// despite the error, its run_id. They are sent as application/json, as
// Python sends them.
//
// # Where this API differs from Python, and why
//
//   - Paging is by keyset cursor, which is what the dispatcher offers and
//     what stays correct while runs are inserted: a list answers
//     {"runs": [...], "next_cursor": "…" or null} where Python answers a bare
//     array, and children are paged the same way. A non-zero offset is
//     refused (400), not ignored: ignoring it would hand an offset-paging
//     client the first page forever. List items are whole runs, of which
//     Python's RunSummary fields are a subset.
//   - limit outside 1..200 is refused with 422, as FastAPI's le=200 refuses
//     it, not clamped. status may repeat and take comma lists (Python takes
//     one); an unknown status is 400, as Python's handler answers; every other
//     query check is FastAPI's 422. created_after is inclusive and
//     created_before exclusive; a date means its midnight UTC, and the "+" of
//     an unescaped offset, which arrives as a space, is read as "+". Unknown
//     query parameters are ignored, as FastAPI ignores them, but one given
//     twice is 422 rather than FastAPI's last-wins. The executions view
//     refuses lane and feed_id (400): the dispatcher cannot filter by them,
//     and ignoring them would answer rows the client excluded.
//   - Bodies are held to Python's request models more strictly than Pydantic
//     holds them: an unknown field is a 422 naming it (Pydantic drops it
//     silently), so /runs/task and /runs/pipeline take exactly Python's
//     TaskSubmitRequest and PipelineSubmitRequest fields and point to
//     POST /runs for the rest. null is accepted only where Python's field is
//     Optional; params and metadata must be objects; max_retries and
//     retry_delay_seconds are whole numbers up to 2^31-1 (the integer
//     column), 3.0 counting as 3 as in Pydantic's lax mode. Every problem in a
//     body is reported at once. Malformed JSON is 422, as FastAPI answers it.
//     A body without Content-Type is read as JSON, as FastAPI reads it; a
//     non-JSON media type is 415 (FastAPI: 422). A body over MaxBodyBytes is
//     413. Cancel and retry take no fields: the console's cancel "reason" has
//     nowhere to be recorded, and dropping it silently would mislead.
//   - Submit answers 200 with the run, a replayed idempotency key included
//     (fastapi.py). Cancel answers the cancelled run, a superset of Python's
//     {"status": "cancelled", "run_id": …}; retry answers the new run.
//     Cancelling a finished run is 409 NOT_CANCELLABLE and retrying a run
//     that has not failed 409 CONFLICT, as the console answers (fastapi.py:
//     400 and 404).
//   - As in Python, an executor that refuses a run does not fail the request:
//     the run is recorded failed (or dead-lettered) with the executor's error,
//     and that run is the answer. A full queue or a shut-down executor is the
//     exception, a 503 with Retry-After whose run_id names the run recorded
//     meanwhile; resubmitting with the same idempotency_key returns it.
//   - A run id that names nothing is 404, UUID or not: Python's run_id is a
//     plain string, looked up and not found.
//
// The package must never write to a ledger except through the Dispatcher,
// never put a ledger's or an executor's error text in a response (those go
// to Options.Logger; they can hold SQL, hosts and credentials), and never
// know which ledger or executor is behind the dispatcher.
package runsapi
