#!/usr/bin/python3
"""Celery 5.2.6's side of the Go result backend tests (celerybridge/results*_test.go).

    SPINE_REDIS_URL=redis://... /usr/bin/python3 results_interop.py MODE [ARGS]

Modes (the Redis DB is the one the Go test hands over; it is never flushed here):

  wait     Reads JSON lines {"id": ..., "timeout": seconds} on stdin. For each, calls
           AsyncResult(id).get(timeout=...) and prints one JSON line per event:
           {"waiting": id} once get() has subscribed, read the key and started to
           drain pub/sub messages (anything stored after this line can only reach
           it as a PUBLISH), then {"id", "value", "json": json.dumps(value)} or
           {"id", "raised": {...}}.
  view     Reads a JSON list of task ids on stdin; prints {id: what Python reads}.
  store    Reads a JSON list of {"id", "state", "result" | "error"} on stdin and
           stores each with Celery's own backend code (store_result /
           mark_as_failure): the same GET check + SETEX + PUBLISH a worker runs.
  worker   Runs a real `celery worker -P solo` (result_extended when
           INTEROP_EXTENDED=1, task_track_started on), sends the jobs named in
           ARGS (all when none, see JOBS), waits for their final states and prints
           {"jobs": {label: {"id", "stored", "ttl", "published": [...], "py": view}},
           "worker_log": ...}. "published" is every payload PUBLISHed on the key's
           channel, in order (STARTED first).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))

GROUP_ID = '9b7f7c2e-0c4e-4f0e-8a43-5d2b8f1f0a11'
PARENT_ID = '3c1d2a90-7e55-4b6b-9d0c-2f4c7a8e6b22'
ECHO_VALUE = {
    'big': 18446744073709551617, 'neg': -9223372036854775809,
    'text': 'caf\u00e9 \U0001F600 "q" \\ \n', 'float': 1e-07, 'zero': -0.0,
    'nested': [1, [2, {'k': None}], True], 'empty': {},
}

# label: (task name, args, kwargs, options, final state)
JOBS = {
    'add': ('interop.add', [2, 3], {}, {}, 'SUCCESS'),
    'echo': ('interop.echo', [ECHO_VALUE], {}, {}, 'SUCCESS'),
    'lineage': ('interop.add', [1, 1], {'z': 0}, {'group_id': GROUP_ID, 'parent_id': PARENT_ID}, 'SUCCESS'),
    'fail': ('interop.fail', ['boom', 42], {}, {}, 'FAILURE'),
    'keyerror': ('interop.keyerror', ['missing'], {}, {}, 'FAILURE'),
    'custom': ('interop.custom', [], {}, {}, 'FAILURE'),
    'retry': ('interop.retry', [], {}, {}, 'RETRY'),
    'expired': ('interop.add', [1, 2], {}, {'expires_ago': 60}, 'REVOKED'),
    'spawn': ('interop.spawn', [], {}, {}, 'SUCCESS'),
}


class QuotaExceeded(Exception):
    """Raised by interop.custom; Go's readers never have this class."""


def make_app(url, extended=False):
    from celery import Celery
    app = Celery('results_interop', broker=url, backend=url)
    app.conf.update(accept_content=['json'], result_extended=extended,
                    task_track_started=True, worker_prefetch_multiplier=1,
                    broker_transport_options={'visibility_timeout': 7200})

    @app.task(name='interop.add')
    def add(x, y, z=0):
        return x + y + z

    @app.task(name='interop.echo')
    def echo(v):
        return v

    @app.task(name='interop.fail')
    def fail(msg, n):
        raise ValueError(msg, n)

    @app.task(name='interop.keyerror')
    def keyerror(k):
        return {}[k]

    @app.task(name='interop.custom')
    def custom():
        raise QuotaExceeded('over quota', 3)

    @app.task(name='interop.retry', bind=True)
    def retry(self):
        raise self.retry(exc=ValueError('again'), countdown=3600)

    @app.task(name='interop.spawn')
    def spawn():
        return add.delay(2, 3).id

    return app


if 'INTEROP_REDIS_URL' in os.environ:  # imported by `celery -A results_interop worker`
    app = make_app(os.environ['INTEROP_REDIS_URL'], os.environ.get('INTEROP_EXTENDED') == '1')


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=repr) + '\n')
    sys.stdout.flush()


def describe_exception(exc):
    from celery.exceptions import TaskRevokedError, TimeoutError
    return {
        'module': type(exc).__module__, 'type': type(exc).__qualname__,
        'args': list(exc.args), 'str': str(exc),
        'mro': [f'{c.__module__}.{c.__qualname__}' for c in type(exc).__mro__],
        'revoked': isinstance(exc, TaskRevokedError),
        'timeout': isinstance(exc, TimeoutError),
    }


def view(app, tid):
    """What Python reads for tid: the decoded meta and AsyncResult's properties."""
    from celery.result import AsyncResult
    meta = app.backend._get_task_meta_for(tid)  # uncached, exception rebuilt
    r = AsyncResult(tid, app=app)
    out = {k: meta.get(k) for k in ('status', 'traceback', 'children', 'group_id', 'parent_id',
                                    'name', 'args', 'kwargs', 'worker', 'retries', 'queue',
                                    'task_id')}
    out['has'] = sorted(meta)
    res = meta.get('result')
    if isinstance(res, BaseException):
        out['exception'] = describe_exception(res)
    else:
        out['result'] = res
    out['state'] = r.state
    done = r.date_done
    out['date_done'] = done.isoformat() if done else None
    out['date_done_raw'] = meta.get('date_done')
    return out


def mode_wait(url):
    app = make_app(url)
    backend = app.backend
    rc = backend.result_consumer
    current = {'id': None, 'announced': True}
    original = rc.drain_events

    def drain_events(timeout=None):
        if not current['announced']:
            current['announced'] = True
            emit({'waiting': current['id']})
        return original(timeout=timeout)

    rc.drain_events = drain_events
    from celery.result import AsyncResult
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        current.update(id=req['id'], announced=False)
        try:
            value = AsyncResult(req['id'], app=app).get(timeout=req.get('timeout', 10))
        except Exception as exc:  # noqa: BLE001 - reporting what get() raised is the point
            emit({'id': req['id'], 'raised': describe_exception(exc)})
        else:
            emit({'id': req['id'], 'value': value, 'json': json.dumps(value),
                  'type': type(value).__name__})


def mode_view(url):
    app = make_app(url)
    emit({tid: view(app, tid) for tid in json.load(sys.stdin)})


def mode_store(url):
    app = make_app(url)
    import redis as redislib
    client = redislib.Redis.from_url(url)
    out = {}
    for item in json.load(sys.stdin):
        tid, state = item['id'], item['state']
        if 'error' in item:
            app.backend.mark_as_failure(tid, ValueError(*item['error']), traceback='Traceback: python')
        else:
            app.backend.store_result(tid, item.get('result'), state)
        stored = client.get(app.backend.get_key_for_task(tid))
        out[tid] = stored.decode('utf-8') if stored is not None else None
    emit(out)


def mode_worker(url, labels):
    import redis as redislib
    labels = labels or list(JOBS)
    client = redislib.Redis.from_url(url)
    app = make_app(url, os.environ.get('INTEROP_EXTENDED') == '1')

    # Capture every publish on result channels before anything runs. The
    # pattern is server-wide (pub/sub ignores DBs), so keep our ids only.
    ps = client.pubsub()
    ps.psubscribe('celery-task-meta-*')
    deadline = time.time() + 10
    while time.time() < deadline:
        m = ps.get_message(timeout=1)
        if m and m['type'] == 'psubscribe':
            break

    env = dict(os.environ, INTEROP_REDIS_URL=url, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE='1')
    worker = subprocess.Popen(
        [sys.executable, '-m', 'celery', '-A', 'results_interop', 'worker', '-P', 'solo',
         '-n', 'interop@gotest', '--without-heartbeat', '--without-mingle', '--without-gossip',
         '-l', 'INFO'],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ids, expect = {}, {}
    published = {}
    try:
        for label in labels:
            name, args, kwargs, options, final = JOBS[label]
            options = dict(options)
            if 'expires_ago' in options:
                options['expires'] = datetime.now(timezone.utc) - timedelta(seconds=options.pop('expires_ago'))
            tid = str(uuid.uuid4())
            app.send_task(name, args, kwargs, task_id=tid, **options)
            ids[label], expect[label] = tid, final
        deadline = time.time() + float(os.environ.get('INTEROP_TIMEOUT', '60'))
        pending = dict(expect)
        while pending and time.time() < deadline and worker.poll() is None:
            for label, final in list(pending.items()):
                raw = client.get(app.backend.get_key_for_task(ids[label]))
                if raw is None:
                    continue
                meta = json.loads(raw)
                if meta['status'] != final:
                    continue
                del pending[label]
                if label == 'spawn':  # wait for the child too
                    child = meta['result']
                    ids['spawn.child'] = child
                    pending['spawn.child'] = expect['spawn.child'] = 'SUCCESS'
            time.sleep(0.05)
        time.sleep(0.2)
        while True:
            m = ps.get_message(timeout=0.2)
            if m is None:
                break
            if m['type'] == 'pmessage':
                published.setdefault(m['channel'].decode(), []).append(m['data'].decode('utf-8'))
    finally:
        worker.terminate()
        try:
            log = worker.communicate(timeout=20)[0].decode('utf-8', 'replace')
        except subprocess.TimeoutExpired:
            worker.kill()
            log = worker.communicate()[0].decode('utf-8', 'replace')
    jobs = {}
    for label, tid in ids.items():
        key = app.backend.get_key_for_task(tid).decode()
        raw = client.get(key)
        jobs[label] = {
            'id': tid, 'stored': raw.decode('utf-8') if raw is not None else None,
            'ttl': client.ttl(key), 'published': published.get(key, []),
            'py': view(app, tid), 'expected': expect[label],
        }
    emit({'jobs': jobs, 'worker_log': log})


def main():
    url = os.environ['SPINE_REDIS_URL']
    mode = sys.argv[1]
    if mode == 'wait':
        mode_wait(url)
    elif mode == 'view':
        mode_view(url)
    elif mode == 'store':
        mode_store(url)
    elif mode == 'worker':
        mode_worker(url, sys.argv[2:])
    else:
        sys.exit(f'unknown mode {mode!r}')


if __name__ == '__main__':
    main()
