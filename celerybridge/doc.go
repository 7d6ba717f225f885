// Package celerybridge reads and writes Celery task messages as they sit in
// Redis, byte-compatible with Celery 5.2.6 / kombu 5.2.4 (Debian's
// python3-celery) and readable by every version up to 5.6.
//
// The layers follow the wire:
//
//   - Envelope is the JSON string kombu LPUSHes on a queue list: body,
//     content-encoding, content-type, headers, properties. DecodeEnvelope keeps
//     every member, known or not, and Encode writes a decoded envelope back as
//     the same JSON value — for one Celery wrote, the same bytes.
//   - TaskMessage is protocol 2 (headers + [args, kwargs, embed]),
//     TaskMessageV1 protocol 1 and hybrid messages; NewTaskMessage and
//     NewTaskMessageV1 build what Celery's apply_async publishes.
//   - Task is the protocol-independent view a worker acts on (DecodeTask).
//   - DecodeValue and EncodeValue convert between JSON and Go with numbers
//     intact and kombu 5.3's __type__ wrappers; Target says which kombu
//     generation a message is written for.
//   - ParseTime reads every date format any version writes; FormatTime writes
//     the one they all read alike.
//
// On top of the codec, the Redis side, each interoperating with Python
// producers, consumers and workers:
//
//   - Transport is kombu's Redis transport: publish to the priority lists
//     and bindings, claim in kombu's consume order with one Lua script that
//     moves a message into kombu's unacked records (no crash instant loses
//     it), ack, reject, and visibility-timeout restore under unacked_mutex.
//   - ResultBackend reads and writes celery-task-meta-<id> as a worker does
//     (write and PUBLISH together, a SUCCESS never overwritten) and waits
//     for results as AsyncResult.get() does.
//   - Executor is core's Executor on Celery: spine.execute.<kind> (or
//     Capture-Spine's run_pipeline) tasks out, results back to the
//     dispatcher, revokes as app.control.revoke broadcasts them.
//
// What the package must never do:
//
//   - Never decode a pickle body (nor yaml or msgpack): unpickling is code
//     execution. Such bodies are carried byte for byte, and asking for their
//     arguments is ErrOpaqueBody.
//   - Never write a message a 5.2.6 worker would choke on. Every Encode
//     validates first and refuses, with an error naming the rule, a body that
//     is not [args, kwargs, embed], args that are not a list, kwargs that are
//     not an object, a missing id, task name or delivery tag, and dates 5.2.6
//     would misread. Decoding reports the same faults in what others wrote,
//     so a caller can dead-letter a message with the reason instead of
//     feeding a worker a poison pill.
//
// The codec does no I/O: only Transport, ResultBackend and Executor talk to
// Redis.
package celerybridge
