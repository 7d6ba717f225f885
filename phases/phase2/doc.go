// Package phase2 is phase 2 of the migration path: a side-car beside the
// Celery workers that takes Capture-Spine's bypass tasks (the Celery tasks
// that never go through the Dispatcher) out of "no tracking" one task and one
// percentage at a time.
//
// Celery's task_routes (WriteCeleryConfig writes the snippet) send the bypass tasks
// to an intercept queue. The Sidecar claims from it atomically and applies the
// task's Route, kept in PostgreSQL (table spine_phase2_routes) so that every
// replica sees the same and a change reaches them within seconds:
//
//   - passthrough: the original envelope goes to the worker queue, byte for
//     byte (no tracking: today's behaviour). It is decided as it is peeked
//     and moved in the claim itself (celerybridge's ClaimOrForward), never
//     held; only a redelivered message is claimed first, since a run
//     recorded for its task id may overrule the route;
//   - shadow: an execution is recorded (idempotent on the Celery task id),
//     the envelope goes to the worker queue unchanged, and the execution
//     follows the task's result;
//   - reroute: the call becomes a pipeline WorkSpec (the bypass catalog) and
//     is submitted through core's Dispatcher on the Postgres ledger; the
//     unified pipeline task is published for the Python workers, and when it
//     ends the original task id's result is written, so a caller waiting on
//     the original AsyncResult gets its answer.
//
// A route's percentage picks the messages that take its mode by a stable hash
// of the task id (raising 10% to 50% keeps the first 10% where they were);
// the others go the previous step's way: passthrough for shadow, shadow for
// reroute. Once a task id has a run, its first decision stands.
//
// Shadowed and rerouted runs follow their task's result through one pub/sub
// connection per side-car, a periodic re-read, and, for runs whose side-car
// died, adoption by any replica (the runs are in PostgreSQL, queued or
// running under the executor names ExecutorShadow and ExecutorReroute).
// Rerouted messages with an eta are parked in Redis until due; passthrough
// and shadow leave the eta to the worker, as Celery always has. Undecodable
// messages, unknown tasks, mapping failures and pickle bodies go to the
// transport's dead-letter list with the reason. Counters per task live in
// Redis beside the queues; Status reads them with the routes and the lag.
//
// What the package must never do: lose or duplicate a message. Every hand-off
// of a claimed message (republish, pipeline publish, parking an eta message)
// removes its unacked record in the same atomic step (settle.lua; the
// transport's own move for dead letters), and a passed-through message moves
// from the intercept queue to its worker queue in one atomic step, so a
// side-car killed at any instant leaves each message either waiting, unacked
// (a visibility-timeout scan restores it), or handed off exactly once. It
// never decodes a pickle body.
package phase2
