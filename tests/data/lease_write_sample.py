# Not imported: tests/test_layers.py checks that its finder of job status writes sees these.
def set_status(session, job, status, item, update, Job, now):
    item.error = "not a job's"  # a batch item's error: not a job's lease field
    job.status = status
    job.queued_at, job.worker = now, None
    session.execute(update(Job).where(Job.id == 1).values(heartbeat_at=now))
