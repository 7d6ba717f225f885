"""Publishes a known set of messages with real Celery 5.2.6 (no worker), for
spine-migrate's celery inspect test; prints their ids as JSON.

    SPINE_REDIS_URL=redis://... python3 cli_producer.py QUEUE
"""
import datetime
import json
import os
import sys

from celery import Celery

queue = sys.argv[1]
app = Celery('cli_producer', broker=os.environ['SPINE_REDIS_URL'])
app.conf.accept_content = ['json', 'pickle']

ids = {}
ids['plain'] = app.send_task('app.tasks.backup.run_backup_for_user', args=[42],
                             kwargs={'backup_type': 'incremental'}, queue=queue).id
ids['eta'] = app.send_task('app.tasks.sync.sync_environments', args=['prod', 'staging'], queue=queue,
                           countdown=3600, expires=7200, priority=7).id
ids['v1'] = app.send_task('app.tasks.recommendations.update_recommendations', args=[], kwargs={'user': 'ü'},
                          queue=queue, priority=2).id
# The message builder is chosen when an app first publishes: protocol 1
# needs an app configured for it from the start.
app1 = Celery('cli_producer_v1', broker=os.environ['SPINE_REDIS_URL'])
app1.conf.task_protocol = 1
ids['protocol1'] = app1.send_task('app.tasks.copilot_chat_sync.sync_copilot_chats', args=[7], queue=queue).id
ids['pickle'] = app.send_task('app.tasks.batch_ingestion_tasks.batch_import_documents', args=['imp-1'],
                              queue=queue, serializer='pickle').id
print(json.dumps(ids))
