"""The Python side of spine-migrate phase 2's tests, with real Celery 5.2.6.

As a worker (a stand-in for Capture-Spine's), serving the six bypass tasks on the
worker queue and run_pipeline on the lanes' queues:

    SPINE_REDIS_URL=redis://... python3 -m celery -A phase2_app worker -Q celery,normal ...

Every task records what ran in the hash "check:ran" (task id -> JSON), so a test
can tell each id ran exactly once. A bypass task called with fail=True raises.

As a producer configured with `spine-migrate phase2 celery-config`'s output:

    SPINE_REDIS_URL=... PHASE2_ROUTES=routes.py python3 phase2_app.py send N [fail]
        sends N calls of each catalog task and one task outside the catalog (and
        with fail, one run_backup_for_user(7, fail=True) listed under "fail");
        prints {"ids": {task: [id, ...]}, "other": id}
    SPINE_REDIS_URL=... python3 phase2_app.py get TIMEOUT < ids.json
        AsyncResult(id).get(TIMEOUT) for every id of a JSON list; prints
        {id: {"ok": result} | {"error": "Type: message"}}
"""
import importlib.util
import json
import os
import sys
import time

import redis
from celery import Celery

url = os.environ['SPINE_REDIS_URL']
app = Celery('phase2_app', broker=url, backend=url)
routes = os.environ.get('PHASE2_ROUTES')
if routes:
    # Loaded the way an operator would: the generated file as a config module.
    spec = importlib.util.spec_from_file_location('spine_phase2_routes', routes)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app.config_from_object(module)
app.conf.update(broker_url=url, result_backend=url, accept_content=['json'],
                worker_prefetch_multiplier=1, task_track_started=True)
client = redis.Redis.from_url(url)

BYPASS = {
    'app.tasks.batch_ingestion_tasks.batch_import_documents': ([7, ['doc-1', 'doc-2']], {}),
    'app.tasks.copilot_chat_sync.sync_copilot_chats': ([7], {}),
    'app.tasks.backup.schedule_pending_backups': ([], {}),
    'app.tasks.backup.run_backup_for_user': ([7], {'backup_type': 'incremental'}),
    'app.tasks.sync.sync_environments': ([['prod', 'staging']], {}),
    'app.tasks.recommendations.update_recommendations': ([7], {}),
}
OTHER = 'app.tasks.cleanup.purge_tmp'


def record(task, payload):
    r = task.request
    client.hset('check:ran', r.id, json.dumps({
        'task': task.name, 'payload': payload, 'at': time.time(),
        'routing_key': (r.delivery_info or {}).get('routing_key'),
    }))
    client.hincrby('check:runs', r.id, 1)


def bypass(self, *args, **kwargs):
    record(self, {'args': list(args), 'kwargs': kwargs})
    if kwargs.get('fail'):
        raise ValueError('failed as asked: ' + self.name)
    return {'task': self.name, 'args': list(args), 'kwargs': kwargs}


for name in list(BYPASS) + [OTHER]:
    app.task(name=name, bind=True)(bypass)


@app.task(name='run_pipeline', bind=True)
def run_pipeline(self, execution_id):
    record(self, {'execution_id': execution_id})
    return {'execution_id': execution_id, 'ran': 'run_pipeline'}


def send(n, fail=False):
    ids = {}
    for name, (args, kwargs) in BYPASS.items():
        ids[name] = [app.send_task(name, args=args, kwargs=kwargs).id for _ in range(n)]
    if fail:
        ids['fail'] = [app.send_task('app.tasks.backup.run_backup_for_user', args=[7], kwargs={'fail': True}).id]
    other = app.send_task(OTHER, args=[1]).id
    print(json.dumps({'ids': ids, 'other': other}))


def get(timeout):
    out = {}
    for task_id in json.load(sys.stdin):
        try:
            out[task_id] = {'ok': app.AsyncResult(task_id).get(timeout=timeout)}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out[task_id] = {'error': '%s: %s' % (type(exc).__name__, exc)}
    print(json.dumps(out))


if __name__ == '__main__':
    if sys.argv[1] == 'send':
        send(int(sys.argv[2]), fail=sys.argv[3:] == ['fail'])
    elif sys.argv[1] == 'get':
        get(float(sys.argv[2]))
    else:
        sys.exit('usage: phase2_app.py send N | get TIMEOUT')
