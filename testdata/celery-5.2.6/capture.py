#!/usr/bin/python3
"""Capture the exact bytes real Celery writes to Redis, as test fixtures.

Run with Debian's interpreter, which has python3-celery 5.2.6 / kombu 5.2.4 and
python3-redis (plus python3-msgpack and python3-yaml for those serializers):

    /usr/bin/python3 testdata/celery-5.2.6/capture.py [--vectors-only] [outdir]

It starts its own throw-away redis-server on a free loopback port (no
persistence), publishes one case at a time with a fresh Celery app, and records
every list the case left in Redis: the key, the raw string exactly as LPUSHed
("raw"), and the parsed JSON ("value"). Output files (default: this directory):

    captured-protocol2.json   protocol 2 cases
    captured-protocol1.json   protocol 1 cases
    captured-other.json       pickle / yaml / msgpack / compression / retry / restore
    pyvectors.json            saferepr, float repr and json.dumps outputs for the Go tests

The Go tests read these files; nothing here is imported by Go code.
"""

import contextlib
import datetime
import decimal
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import celery
import kombu
import redis
from celery import Celery, chain, chord, group
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps as kombu_dumps

TASK_BACKUP = 'app.tasks.backup.run_backup_for_user'
TASK_IMPORT = 'app.tasks.batch_ingestion_tasks.batch_import_documents'
TASK_COPILOT = 'app.tasks.copilot_chat_sync.sync_copilot_chats'
TASK_SUM = 'app.tasks.math.tsum'
TASK_ANY = 'app.tasks.misc.anything'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server():
    port = free_port()
    workdir = tempfile.mkdtemp(prefix='capture-redis-')
    proc = subprocess.Popen(
        ['redis-server', '--port', str(port), '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no', '--dir', workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host='127.0.0.1', port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError('redis-server did not start')
        yield port, client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_app(port, **conf):
    url = f'redis://127.0.0.1:{port}/0'
    app = Celery('capture', broker=url, backend=url, set_as_current=False)
    app.conf.update(conf)

    @app.task(name=TASK_BACKUP)
    def run_backup_for_user(user_id, backup_type='full'):
        return user_id

    @app.task(name=TASK_IMPORT)
    def batch_import_documents(import_id, documents=()):
        return import_id

    @app.task(name=TASK_COPILOT)
    def sync_copilot_chats():
        return None

    @app.task(name=TASK_SUM)
    def tsum(values, note=None):
        return sum(values)

    @app.task(name=TASK_ANY)
    def anything(*args, **kwargs):
        return None

    return app


def snapshot(client):
    """Every list in the database, oldest message first, plus other keys."""
    messages = []
    for key in sorted(client.keys('*')):
        if client.type(key) != b'list':
            continue
        # LPUSH puts the newest at the head: read from the tail for send order.
        for raw in reversed(client.lrange(key, 0, -1)):
            text = raw.decode('utf-8')
            messages.append({
                'key': key.decode('utf-8'),
                'raw': text,
                'value': json.loads(text),
            })
    return messages


# --- cases -----------------------------------------------------------------
# Each case gets a fresh app and an empty database; it returns notes (or None).

def case_delay(app):
    app.tasks[TASK_IMPORT].delay('imp-1', documents=['a', 'b'])


def case_unicode(app):
    app.tasks[TASK_IMPORT].delay(
        'caf\u00e9 \u2603 \U0001F600 "quote" \'apos\' back\\slash\nnl\ttab\x7f',
        documents=['\u00fcber', '\u65e5\u672c\u8a9e', '\u2028\u2029'],
    )


def case_big_numbers(app):
    app.tasks[TASK_SUM].apply_async(
        args=[[2**63, 2**64 + 1, -2**63 - 1, 10**30, 1.0, 1e-7, 1.5, -0.0,
               1e16, 123456789.0, 1e22, 0.1, 2.5e-5, 3.141592653589793]],
        kwargs={})


def case_countdown_expires(app):
    app.tasks[TASK_BACKUP].apply_async(
        args=[42], kwargs={'backup_type': 'incremental'},
        countdown=10, expires=3600)


def case_eta_datetime(app):
    eta = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    app.tasks[TASK_BACKUP].apply_async(args=[1], eta=eta,
                                       expires=eta + datetime.timedelta(hours=1))


def case_priorities(app):
    for p in range(10):
        app.tasks[TASK_BACKUP].apply_async(args=[p], priority=p)


def case_custom_queue(app):
    app.tasks[TASK_BACKUP].apply_async(args=[7], queue='backups')


def case_time_limits(app):
    app.tasks[TASK_BACKUP].apply_async(args=[3], time_limit=30,
                                       soft_time_limit=12.5, shadow='shadowed',
                                       ignore_result=True,
                                       headers={'x-tenant': 'acme'})


def case_chain(app):
    chain(app.tasks[TASK_COPILOT].si(), app.tasks[TASK_BACKUP].si(1)).apply_async()


def case_chain3(app):
    chain(app.tasks[TASK_BACKUP].s(1), app.tasks[TASK_BACKUP].s(),
          app.tasks[TASK_BACKUP].s()).apply_async()


def case_group(app):
    group(app.tasks[TASK_BACKUP].s(1), app.tasks[TASK_BACKUP].s(0)).apply_async()


def case_chord(app):
    chord([app.tasks[TASK_BACKUP].s(1), app.tasks[TASK_BACKUP].s(2)],
          app.tasks[TASK_SUM].s()).apply_async()


def case_link_error(app):
    app.tasks[TASK_BACKUP].apply_async(
        args=[5], link=app.tasks[TASK_SUM].s(),
        link_error=app.tasks[TASK_COPILOT].si())


def case_long_args(app):
    # argsrepr/kwargsrepr are truncated by saferepr(maxlen=1024).
    app.tasks[TASK_SUM].apply_async(
        args=[list(range(400))], kwargs={'note': 'word ' * 300})


def case_retry(app):
    """What a worker publishes when a task calls self.retry()."""
    task = app.tasks[TASK_BACKUP]
    task.push_request(
        id='11111111-2222-4333-8444-555555555555', called_directly=False,
        args=[9], kwargs={'backup_type': 'full'}, retries=0,
        root_id='11111111-2222-4333-8444-555555555555', parent_id=None,
        group=None, group_index=None, headers=None, reply_to='reply-oid',
        origin='gen1@worker', timelimit=(None, None), expires=None, eta=None,
        delivery_info={'exchange': '', 'routing_key': 'celery',
                       'priority': 0, 'redelivered': False},
        hostname='celery@worker', is_eager=False)
    try:
        task.retry(countdown=30, throw=False)
    finally:
        task.pop_request()


def case_restored(app):
    """A message kombu took into its unacked hash and restored (redelivered)."""
    app.tasks[TASK_BACKUP].apply_async(args=[11], priority=3)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        message = channel.basic_get('celery', no_ack=False)
        assert message is not None
        channel.qos.restore_unacked()


def case_pickle(app):
    app.tasks[TASK_ANY].apply_async(
        args=[datetime.datetime(2024, 5, 6, 7, 8, 9), b'\x00\xff'],
        serializer='pickle')


def case_yaml(app):
    app.tasks[TASK_BACKUP].apply_async(args=['y'], serializer='yaml')


def case_msgpack(app):
    app.tasks[TASK_ANY].apply_async(args=['m', 1], serializer='msgpack')


def case_compressed(app):
    app.tasks[TASK_IMPORT].apply_async(args=['zip'], kwargs={'documents': ['a'] * 20},
                                       compression='gzip')


def case_compressed_zlib_alias(app):
    app.tasks[TASK_IMPORT].apply_async(args=['zlib'], compression='zlib')


def case_compressed_pickle(app):
    app.tasks[TASK_BACKUP].apply_async(args=[1], serializer='pickle',
                                       compression='bzip2')


def case_typed_kombu52(app):
    # kombu 5.2 writes these as plain strings (no __type__ wrappers).
    app.tasks[TASK_ANY].apply_async(args=[
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 1, 2),
        datetime.time(12, 30, 15),
        uuid.UUID('12345678-1234-5678-1234-567812345678'),
        decimal.Decimal('1.10'),
    ])


CASES = [
    # (name, protocol, conf, function, file)
    ('delay', 2, {}, case_delay, 'protocol2'),
    ('unicode', 2, {}, case_unicode, 'protocol2'),
    ('big_numbers', 2, {}, case_big_numbers, 'protocol2'),
    ('countdown_expires', 2, {}, case_countdown_expires, 'protocol2'),
    ('eta_datetime', 2, {}, case_eta_datetime, 'protocol2'),
    ('priorities', 2, {}, case_priorities, 'protocol2'),
    ('custom_queue', 2, {}, case_custom_queue, 'protocol2'),
    ('time_limits', 2, {}, case_time_limits, 'protocol2'),
    ('chain', 2, {}, case_chain, 'protocol2'),
    ('chain3', 2, {}, case_chain3, 'protocol2'),
    ('group', 2, {}, case_group, 'protocol2'),
    ('chord', 2, {}, case_chord, 'protocol2'),
    ('link_error', 2, {}, case_link_error, 'protocol2'),
    ('long_args', 2, {}, case_long_args, 'protocol2'),
    ('typed_kombu52', 2, {}, case_typed_kombu52, 'protocol2'),
    ('delay', 1, {}, case_delay, 'protocol1'),
    ('unicode', 1, {}, case_unicode, 'protocol1'),
    ('big_numbers', 1, {}, case_big_numbers, 'protocol1'),
    ('countdown_expires', 1, {}, case_countdown_expires, 'protocol1'),
    ('priorities', 1, {}, case_priorities, 'protocol1'),
    ('custom_queue', 1, {}, case_custom_queue, 'protocol1'),
    ('chain', 1, {}, case_chain, 'protocol1'),
    ('group', 1, {}, case_group, 'protocol1'),
    ('retry', 2, {}, case_retry, 'other'),
    ('restored', 2, {}, case_restored, 'other'),
    ('pickle', 2, {'accept_content': ['json', 'pickle']}, case_pickle, 'other'),
    ('pickle', 1, {'accept_content': ['json', 'pickle']}, case_pickle, 'other'),
    ('yaml', 2, {'accept_content': ['json', 'yaml']}, case_yaml, 'other'),
    ('msgpack', 2, {'accept_content': ['json', 'msgpack']}, case_msgpack, 'other'),
    ('compressed', 2, {}, case_compressed, 'other'),
    ('compressed_zlib_alias', 2, {}, case_compressed_zlib_alias, 'other'),
    ('compressed_pickle_bzip2', 2, {'accept_content': ['json', 'pickle']},
     case_compressed_pickle, 'other'),
]


def capture(outdir):
    files = {'protocol1': [], 'protocol2': [], 'other': []}
    with redis_server() as (port, client):
        for name, protocol, conf, fn, fname in CASES:
            client.flushdb()
            app = make_app(port, task_protocol=protocol, **conf)
            try:
                fn(app)
            finally:
                app.close()
            messages = snapshot(client)
            if not messages:
                raise RuntimeError(f'case {name}/{protocol}: nothing captured')
            files[fname].append({
                'case': name,
                'protocol': protocol,
                'messages': messages,
            })
    meta = {
        'python': platform.python_version(),
        'celery': celery.__version__,
        'kombu': kombu.__version__,
        'redis-py': redis.__version__,
    }
    for fname, cases in files.items():
        path = os.path.join(outdir, f'captured-{fname}.json')
        with open(path, 'w') as f:
            json.dump({'generator': meta, 'cases': cases}, f, indent=1,
                      ensure_ascii=False)
            f.write('\n')
        print(f'wrote {path}: {sum(len(c["messages"]) for c in cases)} messages')


# --- Python reference outputs for the Go unit tests ---------------------------

def pyvectors(outdir):
    values = [
        [], {}, [[]], [{}], ['a'], [1], [1, 2], ['imp-1'], [None, True, False],
        [1.0, 1e-7, 1e16, 1e15, 123456789.0, 0.1, -0.0, 2.5e-5, 1e22, 1e-4,
         float('nan'), float('inf'), float('-inf')],
        [2**63, -2**63 - 1, 10**30],
        ["it's", 'back\\slash', 'nl\nx', 'caf\u00e9', '\U0001F600', ''],
        [[1, [2, [3, [4, [5]]]]]], [{'a': {'b': {'c': {'d': 1}}}}],
        [{'k': [1, 2, {'x': None}]}, 'tail'],
        [list(range(100))], ['word ' * 40], ['x' * 30, 'y' * 30, 'z' * 30],
        [{'ab cd ef': 'x' * 50, 'k': [1, 2, 3]}], [[1, 2, [3, 4, [5, 6]]]],
        [{'documents': ['a', 'b']}], [{'': 1, "q'k": 2}],
    ]
    maxlens = [None, 1024, 50, 20, 12, 7, 5, 3, 1]
    repr_cases = []
    for v in values:
        # Celery's args are a tuple (delay) or a list (apply_async).
        for as_tuple in ((True, False) if isinstance(v, list) else (False,)):
            obj = tuple(v) if as_tuple else v
            for m in maxlens:
                repr_cases.append({'args': v, 'tuple': as_tuple, 'maxlen': m,
                                   'repr': saferepr(obj, m)})
    kwargs_cases = []
    for kw in [{}, {'documents': ['a', 'b']}, {'backup_type': 'incremental'},
               {'a': 1, 'b': [1, {'c': 'd'}], 'e': None},
               {'note': 'word ' * 300}, {'x' * 40: 'y' * 40, 'z': 1}]:
        for m in [None, 1024, 30, 10]:
            kwargs_cases.append({'kwargs': kw, 'maxlen': m,
                                 'repr': saferepr(kw, m)})
    floats = [0.0, -0.0, 1.0, 1e-7, 1e16, 1e15, 9999999999999998.0, 1e-4,
              1e-5, 0.1, 1 / 3, 2.5e-5, 1e22, 1.7976931348623157e308,
              5e-324, 123456789.0, 1234567890123456789.0, 100.0, 1.5, -2.75]
    float_cases = [{'bits': __import__('struct').pack('>d', f).hex(),
                    'repr': repr(f)} for f in floats]
    strings = ['', 'plain', 'caf\u00e9', '\U0001F600', '"q" \\ /',
               '\x00\x01\x1f\x7f\x80', '\u2028\u2029', '<>&', '\t\n\r\b\f']
    string_cases = [{'s': s, 'json': json.dumps(s)} for s in strings]
    typed = {
        'datetime_utc': kombu_dumps(datetime.datetime(2024, 1, 2, 3, 4, 5, 6000,
                                                      tzinfo=datetime.timezone.utc)),
        'datetime_whole': kombu_dumps(datetime.datetime(2024, 1, 2, 3, 4, 5,
                                                        tzinfo=datetime.timezone.utc)),
        'datetime_naive': kombu_dumps(datetime.datetime(2024, 1, 2, 3, 4, 5)),
        'date': kombu_dumps(datetime.date(2024, 1, 2)),
        'time': kombu_dumps(datetime.time(12, 30, 15, 500)),
        'uuid': kombu_dumps(uuid.UUID('12345678-1234-5678-1234-567812345678')),
        'decimal': kombu_dumps(decimal.Decimal('1.10')),
    }
    from celery.utils.iso8601 import parse_iso8601
    iso_cases = []
    for d in ['2026-11-23T16:55:48.632818+00:00', '2026-11-23T16:55:48+00:00',
              '2026-11-23T16:55:48Z', '2026-11-23T16:55:48', '2026-11-23',
              '2026-11-23 16:55:48', '2026-11-23T17:55:48+01:00',
              '2026-11-23T15:55:48-01:30', '2026-11-23T16:55:48+0000',
              '2026-11-23T17:55:48+0100', '2026-11-23T16:55:48.5+00:00',
              '2026-11-23T16:55:48.123+00:00', '2026-11-23T16:55:48.123456789Z',
              '2026-11-23T16:55:48.0000001+00:00', '2026-11-23T16:55:48.999999Z',
              '2026-11-23T16:55', '2026-11-23T17:55:49+01:00:01',
              '2026-11-23T16:55:48,25Z', '2024-02-29T00:00:00']:
        try:
            r = parse_iso8601(d)
            if r.tzinfo is None:
                res = {'utc': r.isoformat(), 'naive': True}
            else:
                res = {'utc': r.astimezone(datetime.timezone.utc).isoformat(), 'naive': False}
        except (ValueError, TypeError) as exc:
            res = {'error': type(exc).__name__}
        iso_cases.append({'s': d, 'celery52': res})
    out = {
        'iso8601_52': iso_cases,
        'generator': {'python': platform.python_version(),
                      'celery': celery.__version__, 'kombu': kombu.__version__},
        'saferepr_args': repr_cases,
        'saferepr_kwargs': kwargs_cases,
        'float_repr': float_cases,
        'json_strings': string_cases,
        'kombu52_typed': typed,
    }
    path = os.path.join(outdir, 'pyvectors.json')
    with open(path, 'w') as f:
        # allow_nan: the args above include NaN/Infinity, exactly as Python writes them.
        json.dump(out, f, indent=1)
        f.write('\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    outdir = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    if '--vectors-only' not in sys.argv:
        capture(outdir)
    pyvectors(outdir)
