#!/usr/bin/python3
"""The Python side of celerybridge's transport interop tests (transport_*_test.go).

Real Celery 5.2.6 / kombu 5.2.4 / redis-py 4.3.4, driven by the Go tests:

    transport_interop.py produce   SPEC     apply_async each message, no worker
    transport_interop.py declare   SPEC     declare queues (bindings) as a producer does
    transport_interop.py consume   SPEC     kombu consumer, drain without ack, report
    transport_interop.py roundtrip SPEC     kombu basic_get + restore_by_tag per message
    python3 -m celery -A transport_interop worker ...   a worker running interop.record

SPEC is JSON (an argument). Every command prints one JSON object on stdout.
INTEROP_URL names the Redis DB; INTEROP_OPTS (JSON) holds broker transport
options and queue declarations for the worker, as SPEC does for commands:
    {"transport_options": {...}, "queues": [{"name", "exchange", "type", "routing_key"}]}
interop.record(label) appends {"label", "id", "delivery_info", "redelivered"}
to the plain Redis list interop:ran, so the Go test sees what ran, in order.
"""

import base64
import json
import os
import sys
import time


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def make_app(url, opts):
    from celery import Celery
    from kombu import Exchange, Queue
    import redis as redislib

    app = Celery('transport_interop', broker=url)
    queues = []
    for q in opts.get('queues', []):
        if q.get('exchange'):
            queues.append(Queue(q['name'], Exchange(q['exchange'], type=q.get('type', 'direct')),
                                routing_key=q.get('routing_key', q['name'])))
        else:
            queues.append(Queue(q['name']))
    app.conf.update(
        accept_content=['json'],  # pickle would make Celery refuse to run as root
        worker_prefetch_multiplier=1,
        broker_transport_options=opts.get('transport_options', {}),
        task_queues=queues or None,
        worker_hijack_root_logger=False,
    )
    client = redislib.Redis.from_url(url)

    @app.task(name='interop.record', bind=True, ignore_result=True)
    def record(self, label):
        info = self.request.delivery_info or {}
        client.rpush('interop:ran', json.dumps({
            'label': label, 'id': self.request.id, 'delivery_info': info,
            'redelivered': bool(info.get('redelivered')),
        }))

    return app


if 'INTEROP_URL' in os.environ and __name__ != '__main__':
    app = make_app(os.environ['INTEROP_URL'], json.loads(os.environ.get('INTEROP_OPTS') or '{}'))


def produce(url, spec):
    """spec: {"messages": [{"label", "queue", "priority", "serializer", "exchange", "routing_key"}]}"""
    a = make_app(url, spec)
    out = []
    for m in spec['messages']:
        kw = {'args': [m['label']], 'priority': m.get('priority', 0),
              'serializer': m.get('serializer', 'json')}
        if m.get('exchange'):
            kw.update(exchange=m['exchange'], routing_key=m['routing_key'])
        else:
            kw['queue'] = m.get('queue', 'celery')
        r = a.send_task('interop.record', **kw)
        out.append(r.id)
    return {'ids': out}


def declare(url, spec):
    a = make_app(url, spec)
    with a.connection_for_write() as conn:
        ch = conn.default_channel
        for q in a.amqp.queues.values():
            q(ch).declare()
    return {'declared': sorted(a.amqp.queues)}


def consume(url, spec):
    """Drain spec["queues"] with a kombu Consumer, acking nothing, then report
    the delivery order, the consumer's initial queue cycle and its unacked
    records. With spec["hang"] it prints after spec["count"] messages and
    waits to be killed; otherwise it leaves with os._exit, so kombu's
    restore-at-close never runs."""
    from kombu import Connection, Consumer, Queue
    import redis as redislib

    client = redislib.Redis.from_url(url)
    got = []
    conn = Connection(url, transport_options=spec.get('transport_options', {}))
    ch = conn.channel()

    def on_message(body, message):
        got.append({'tag': message.delivery_tag,
                    'queue': message.delivery_info.get('routing_key'),
                    'raw': b64(json.dumps(message._raw).encode())})

    consumer = Consumer(ch, queues=[Queue(q) for q in spec['queues']], callbacks=[on_message],
                        no_ack=False, accept=['json', 'pickle'])
    consumer.consume()
    cycle = list(ch._queue_cycle.items)
    want = spec.get('count')
    deadline = time.time() + spec.get('timeout', 10)
    while time.time() < deadline and (want is None or len(got) < want):
        try:
            conn.drain_events(timeout=0.5)
        except Exception:  # socket.timeout: nothing left
            if want is None:
                break
    prefix = spec.get('transport_options', {}).get('global_keyprefix', '')
    unacked = {k.decode(): b64(v) for k, v in client.hgetall(prefix + 'unacked').items()}
    index = {k.decode(): s for k, s in client.zrange(prefix + 'unacked_index', 0, -1, withscores=True)}
    report = {'got': got, 'cycle': cycle, 'unacked': unacked, 'index': index}
    sys.stdout.write(json.dumps(report) + '\n')
    sys.stdout.flush()
    if spec.get('hang'):
        time.sleep(3600)
    os._exit(0)


def roundtrip(url, spec):
    """For each raw message (base64): LPUSH it on its own queue, take it with
    kombu's basic_get (recording it as unacked), then restore it with
    QoS.restore_by_tag, reporting the record kombu wrote and every list
    value afterwards. A message kombu cannot take or restore shows as
    'error' or as an empty 'restored'."""
    from kombu import Connection
    import redis as redislib

    client = redislib.Redis.from_url(url)
    results = []
    for i, raw in enumerate(spec['messages']):
        q = 'rt%d' % i
        client.flushdb()
        client.lpush(q, base64.b64decode(raw))
        res = {}
        conn = Connection(url)
        ch = conn.channel()
        try:
            m = ch.basic_get(q)
            if m is None:
                res['error'] = 'empty'
            else:
                res['tag'] = m.delivery_tag
                res['record'] = b64(client.hget('unacked', m.delivery_tag))
                ch.qos.restore_by_tag(m.delivery_tag)
                res['restored'] = {k.decode('utf-8', 'replace'): [b64(v) for v in client.lrange(k, 0, -1)]
                                   for k in client.keys('*') if client.type(k) == b'list'}
                res['unacked_left'] = client.hlen('unacked')
        except Exception as e:
            res['error'] = repr(e)
        results.append(res)
        ch._qos = None  # no restore-at-close: the DB is flushed for the next one
    return {'results': results}


def main():
    cmd, spec = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    url = os.environ['INTEROP_URL']
    fn = {'produce': produce, 'declare': declare, 'consume': consume, 'roundtrip': roundtrip}[cmd]
    out = fn(url, spec)
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
