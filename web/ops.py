"""What an operator sees: the `/ops` page (its live panel polled every 5 s by htmx) and
Prometheus metrics at `/metrics`, both made from one snapshot (worker.ops.take_snapshot); the JSON
form is `GET /api/ops` (web.api).

/metrics is guarded like the API (web.auth.check_api_request): with MILS_WEB_AUTH=token a scrape
sends `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials_file: ...}`).
It names worker hosts and process ids and says how loaded the service is, and each scrape costs a
few database queries, so a stranger should not get it; with MILS_WEB_AUTH=none it is open like
everything else.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, render_template, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from web import auth
from web.db import get_session
from worker.ops import QUEUES, Snapshot, take_snapshot

bp = Blueprint("ops", __name__)
bp.before_request(auth.require_login)

metrics = Blueprint("metrics", __name__)
metrics.before_request(auth.check_api_request)


@bp.get("/ops")
def ops():
    return render_template("ops.html", ops=take_snapshot(get_session()), queues=QUEUES)


@bp.get("/ops/live")
def ops_live():
    return render_template("_ops_live.html", ops=take_snapshot(get_session()), queues=QUEUES)


class SnapshotCollector(Collector):
    """Prometheus metrics read from the service's state when scraped (nothing is kept between
    scrapes: every web process answers the same). `read()` gives a fresh worker.ops.Snapshot."""

    def __init__(self, read) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        snap: Snapshot = self.read()
        broker = snap.broker
        up = GaugeMetricFamily("mils_broker_up", "1 when the broker could be read for this scrape")
        up.add_metric([], 0 if broker.error else 1)
        yield up
        queue = GaugeMetricFamily("mils_queue_messages",
                                  "Step messages waiting on the broker, per queue and broker priority "
                                  "(Redis: 0 is taken first; 'all' where the broker has no priority lists)",
                                  labels=["queue", "priority"])
        for depth in broker.depths:
            queue.add_metric([depth.queue, "all" if depth.priority is None else str(depth.priority)], depth.messages)
        yield queue
        if broker.unacked is not None:
            unacked = GaugeMetricFamily("mils_queue_unacked", "Messages delivered to workers and not acknowledged")
            unacked.add_metric([], broker.unacked)
            yield unacked
        jobs = GaugeMetricFamily("mils_jobs", "Jobs by status", labels=["status"])
        for status, count in snap.jobs_by_status.items():
            jobs.add_metric([status], count)
        yield jobs
        oldest = GaugeMetricFamily("mils_oldest_waiting_step_seconds",
                                   "Age of the oldest step waiting on the queue (0 when none waits)")
        oldest.add_metric([], snap.oldest_waiting_seconds or 0.0)
        yield oldest
        rate = GaugeMetricFamily("mils_steps_per_minute", "Steps committed per minute over the last 5 minutes")
        rate.add_metric([], snap.steps_per_minute)
        yield rate
        running = GaugeMetricFamily("mils_running_steps", "Steps running now, per worker", labels=["worker"])
        silent = GaugeMetricFamily("mils_worker_heartbeat_age_seconds",
                                   "The oldest heartbeat among a worker's running steps", labels=["worker"])
        for w in snap.workers:
            running.add_metric([w.worker], w.running)
            ages = [s.heartbeat_age_seconds for s in w.steps if s.heartbeat_age_seconds is not None]
            if ages:
                silent.add_metric([w.worker], max(ages))
        yield running
        yield silent
        steps = CounterMetricFamily("mils_steps", "Steps committed, ever (from the steps table)")
        steps.add_metric([], snap.steps_total)
        yield steps
        failures = CounterMetricFamily("mils_job_failures", "Times a job failed, ever (its 'failed' events)")
        failures.add_metric([], snap.failures_total)
        yield failures
        requests = CounterMetricFamily("mils_llm_requests", "LLM requests of the steps that recorded them, by "
                                       "generator spec", labels=["model"])
        tokens = CounterMetricFamily("mils_llm_tokens", "Tokens the LLM engines reported for the steps' requests, "
                                     "by generator spec and part", labels=["model", "part"])
        for model, spent in sorted(snap.llm_by_model.items()):
            requests.add_metric([model], spent["requests"])
            tokens.add_metric([model, "prompt"], spent["prompt_tokens"])
            tokens.add_metric([model, "completion"], spent["completion_tokens"])
        yield requests
        yield tokens
        recent = GaugeMetricFamily("mils_job_failures_last_hour", "Jobs failed in the last hour (still failed)")
        recent.add_metric([], snap.failures_last_hour)
        yield recent


@metrics.get("/metrics")
def prometheus():
    """The snapshot in the format the scraper asks for (Prometheus text or OpenMetrics, by its
    Accept header); a registry per scrape, so nothing is global."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: take_snapshot(get_session())))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)
