"""A Celery 5.2.6 worker standing in for spine-core's and Capture-Spine's
Python workers, for celerybridge's executor interop test.

    SPINE_REDIS_URL=redis://... python3 -m celery -A executor_worker worker ...

spine.execute.<kind>(name, params, **kwargs) echoes what it received, fails
when name is "fail", sleeps when name is "sleep"; run_pipeline(execution_id)
echoes the id. Every task records what ran in the hash "check:ran" so the
test can tell a revoked task never ran.
"""
import json
import os
import time

import redis
from celery import Celery

url = os.environ['SPINE_REDIS_URL']
app = Celery('executor_worker', broker=url, backend=url)
app.conf.update(accept_content=['json'], worker_prefetch_multiplier=1, task_acks_late=False,
                result_extended=True)
client = redis.Redis.from_url(url)


def record(task, payload):
    r = task.request
    client.hset('check:ran', r.id, json.dumps({
        'task': task.name, 'payload': payload, 'at': time.time(),
        'routing_key': (r.delivery_info or {}).get('routing_key'),
        'priority': (r.delivery_info or {}).get('priority'),
    }))


def spine_execute(self, name, params, **kwargs):
    record(self, {'name': name, 'params': params, 'kwargs': kwargs})
    if name == 'fail':
        raise ValueError(params.get('msg', 'failed as asked'))
    if name == 'sleep':
        time.sleep(float(params['seconds']))
    return {'name': name, 'params': params, 'kwargs': kwargs,
            'queue': (self.request.delivery_info or {}).get('routing_key')}


for kind in ('task', 'pipeline', 'workflow', 'step'):
    app.task(name='spine.execute.' + kind, bind=True)(spine_execute)


@app.task(name='run_pipeline', bind=True)
def run_pipeline(self, execution_id):
    record(self, {'execution_id': execution_id})
    return {'execution_id': execution_id, 'queue': (self.request.delivery_info or {}).get('routing_key')}
