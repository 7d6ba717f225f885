package celerybridge_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/spinecore/spine-go/celerybridge"
)

// A message exactly as Celery 5.2.6 LPUSHes it for
// run_backup_for_user.apply_async(args=[42], kwargs={...}, countdown=10, expires=3600).
const queued = `{"body": "W1s0Ml0sIHsiYmFja3VwX3R5cGUiOiAiaW5jcmVtZW50YWwifSwgeyJjYWxsYmFja3MiOiBudWxsLCAiZXJyYmFja3MiOiBudWxsLCAiY2hhaW4iOiBudWxsLCAiY2hvcmQiOiBudWxsfV0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "app.tasks.backup.run_backup_for_user", "id": "cf420328-83c6-4274-9606-dc28850a4e96", "shadow": null, "eta": "2026-11-23T16:55:48.632818+00:00", "expires": "2026-11-23T17:55:38.632818+00:00", "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "cf420328-83c6-4274-9606-dc28850a4e96", "parent_id": null, "argsrepr": "[42]", "kwargsrepr": "{'backup_type': 'incremental'}", "origin": "gen8237@vm", "ignore_result": false}, "properties": {"correlation_id": "cf420328-83c6-4274-9606-dc28850a4e96", "reply_to": "20bc7ea6-700a-32a0-ae14-30c766d1ee45", "delivery_mode": 2, "expiration": "3600000", "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "503df175-5bc7-4e7a-8ef6-0885875a1597"}}`

func ExampleDecodeTask() {
	task, err := celerybridge.DecodeTask([]byte(queued))
	if err != nil {
		log.Fatal(err) // dead-letter with err as the reason
	}
	kwargs, err := task.DecodeKwargs()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Protocol, task.Name, task.ID)
	fmt.Println("args", string(task.Args), "kwargs", kwargs)
	fmt.Println("eta", task.ETA)
	// Output:
	// protocol 2 app.tasks.backup.run_backup_for_user cf420328-83c6-4274-9606-dc28850a4e96
	// args [42] kwargs map[backup_type:incremental]
	// eta 2026-11-23 16:55:48.632818 +0000 UTC
}

// Decoding and re-encoding a message Celery wrote gives Celery's bytes back,
// with any edit applied.
func ExampleTaskMessage_Encode() {
	m, err := celerybridge.DecodeTaskMessage([]byte(queued))
	if err != nil {
		log.Fatal(err)
	}
	out, err := m.Encode()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out) == queued)
	// Output: true
}

func ExampleNewTaskMessage() {
	m, err := celerybridge.NewTaskMessage("spine.execute.pipeline",
		[]any{"backup", map[string]any{"user_id": 42}},
		map[string]any{"idempotency_key": "celery:cf420328"},
		celerybridge.TaskOptions{Queue: "default", Priority: 5})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Headers.ArgsRepr)
	fmt.Println(m.Headers.KwargsRepr)
	fmt.Println(m.Properties.DeliveryInfo.RoutingKey, m.Properties.Priority)
	if _, err := m.Encode(); err != nil { // the JSON string to LPUSH
		log.Fatal(err)
	}
	// Output:
	// ('backup', {'user_id': 42})
	// {'idempotency_key': 'celery:cf420328'}
	// default 5
}

// A pickle body is never decoded; its protocol 2 headers still say what
// the task is, so it can be routed or dead-lettered unchanged.
func ExampleEnvelope_Opaque() {
	e, err := celerybridge.DecodeEnvelope([]byte(`{"body": "gAR9lC4=", "content-encoding": "binary", "content-type": "application/x-python-serialize", "headers": {"task": "legacy.task", "id": "0b5c"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "body_encoding": "base64", "delivery_tag": "t-1"}}`))
	if err != nil {
		log.Fatal(err)
	}
	task, _ := e.Task()
	_, err = task.DecodeArgs()
	fmt.Println(e.Opaque(), task.Name, errors.Is(err, celerybridge.ErrOpaqueBody))
	// Output: true legacy.task true
}
