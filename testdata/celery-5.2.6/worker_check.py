#!/usr/bin/python3
"""Feed messages to a real Celery 5.2.6 worker and report what it ran.

    /usr/bin/python3 testdata/celery-5.2.6/worker_check.py messages.json

messages.json is a list of {"key": <redis list>, "raw": <envelope string>}.
The script starts a throw-away redis-server (see capture.py), LPUSHes every
message, runs `celery worker -P solo` (prefork-free, same code path for
decoding and dispatch) with a task registered under every name the messages
use, and waits until each task id has run or a timeout passes. It prints one
JSON object: {"ran": {task_id: {name, args, kwargs, retries, eta, ...}},
"worker_log": "..."}; a message the worker refused or crashed on is simply
missing from "ran", and the log says why.

Used by the Go test TestRealWorkerRunsOurMessages; nothing else imports it.
"""

import contextlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def app_from_env():
    """The worker side: imported by `celery -A worker_check`."""
    from celery import Celery
    import redis as redislib
    url = os.environ['CHECK_REDIS_URL']
    app = Celery('worker_check', broker=url, backend=url)
    app.conf.update(accept_content=['json'], worker_prefetch_multiplier=1,
                    broker_transport_options={'visibility_timeout': 3600})
    client = redislib.Redis.from_url(url)

    def record(self, *args, **kwargs):
        r = self.request
        client.hset('check:results', r.id, json.dumps({
            'name': self.name, 'args': list(args), 'kwargs': kwargs,
            'retries': r.retries, 'eta': r.eta, 'expires': r.expires,
            'root_id': r.root_id, 'parent_id': r.parent_id, 'group': r.group,
            'argsrepr': r.argsrepr, 'kwargsrepr': r.kwargsrepr,
            'priority': (r.delivery_info or {}).get('priority'),
            'routing_key': (r.delivery_info or {}).get('routing_key'),
            'arg_types': [type(a).__name__ for a in args],
        }, default=str))

    for name in json.loads(os.environ['CHECK_TASKS']):
        app.task(name=name, bind=True)(record)
    return app


if 'CHECK_REDIS_URL' in os.environ:
    app = app_from_env()


@contextlib.contextmanager
def given_or_own_redis():
    """The Redis the Go test hands over (SPINE_REDIS_URL), else a throw-away one."""
    url = os.environ.get('SPINE_REDIS_URL')
    if url:
        import redis as redislib
        client = redislib.Redis.from_url(url)
        client.flushdb()
        yield url, client
        return
    from capture import redis_server
    with redis_server() as (port, client):
        yield f'redis://127.0.0.1:{port}/0', client


def main():
    messages = json.load(open(sys.argv[1]))
    ids, names, queues = [], set(), set()
    for m in messages:
        env = json.loads(m['raw'])
        h = env.get('headers') or {}
        if 'task' in h:
            names.add(h['task'])
            ids.append(h['id'])
        else:
            import base64
            body = json.loads(base64.b64decode(env['body']))
            names.add(body['task'])
            ids.append(body['id'])
        queues.add(env['properties']['delivery_info']['routing_key'])
    with given_or_own_redis() as (url, client):
        for m in messages:
            client.lpush(m['key'], m['raw'].encode('utf-8'))
        env = dict(os.environ, CHECK_REDIS_URL=url, CHECK_TASKS=json.dumps(sorted(names)),
                   PYTHONPATH=HERE)
        worker = subprocess.Popen(
            [sys.executable, '-m', 'celery', '-A', 'worker_check',
             'worker', '-P', 'solo', '-Q', ','.join(sorted(queues)), '--without-heartbeat',
             '--without-mingle', '--without-gossip', '-l', 'INFO'],
            cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + float(os.environ.get('CHECK_TIMEOUT', '60'))
        try:
            while time.time() < deadline and client.hlen('check:results') < len(ids):
                if worker.poll() is not None:
                    break
                time.sleep(0.2)
        finally:
            worker.terminate()
            try:
                log = worker.communicate(timeout=20)[0].decode('utf-8', 'replace')
            except subprocess.TimeoutExpired:
                worker.kill()
                log = worker.communicate()[0].decode('utf-8', 'replace')
        ran = {k.decode(): json.loads(v) for k, v in client.hgetall('check:results').items()}
    json.dump({'ran': ran, 'expected': ids, 'worker_log': log}, sys.stdout)


if __name__ == '__main__':
    main()
