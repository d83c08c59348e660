"""Cancelling a portable Flink job on its cluster, which the job service alone does not do.

Beam's Flink job server (2.62 here) answers a cancel by cancelling its own
invocation, and reports CANCELLED, while the job it submitted to a session
cluster goes on running: seen on Flink 1.19.3, where a job "cancelled" by
Ctrl-C kept its slot, its Python worker and its Kafka reads until the cluster
stopped. So the CLI also cancels it through Flink's REST API.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

_LOG = logging.getLogger(__name__)

# --flink_master values that name no cluster: the job server starts an embedded one, which ends with it.
_NO_CLUSTER = frozenset({"[local]", "[auto]", "[collection]"})
_ENDED = frozenset({"CANCELED", "FINISHED", "FAILED"})
_CANCEL_WAIT_S = 30.0


def rest_address(flink_master: str | None) -> str | None:
    """The REST address of the session cluster `--flink_master` names (None: an embedded cluster)."""
    if not flink_master or flink_master.strip() in _NO_CLUSTER:
        return None
    address = flink_master.strip()
    return address if address.startswith(("http://", "https://")) else f"http://{address}"


def flink_job_name(beam_job_id: str) -> str:
    """The job service's id is the job's name, `_`, and a UUID; Flink knows the job by its name."""
    return beam_job_id.rsplit("_", 1)[0]


def _call(url: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


def cancel_on_cluster(address: str, beam_job_id: str) -> list[str]:
    """Cancel the Flink jobs named after `beam_job_id` that have not ended, and wait (30 s at most) until they
    have; returns their Flink job ids."""
    name = flink_job_name(beam_job_id)
    try:
        jobs = [
            job["jid"]
            for job in _call(f"{address}/jobs/overview")["jobs"]
            if job["name"] == name and job["state"] not in _ENDED
        ]
        for job_id in jobs:
            _call(f"{address}/jobs/{job_id}?mode=cancel", method="PATCH")
        deadline = time.monotonic() + _CANCEL_WAIT_S
        while jobs and time.monotonic() < deadline:
            if all(_call(f"{address}/jobs/{job_id}")["state"] in _ENDED for job_id in jobs):
                _LOG.info("cancelled Flink job %s (%s) on %s", ", ".join(jobs), name, address)
                return jobs
            time.sleep(0.5)
    except (OSError, urllib.error.URLError, KeyError, ValueError) as error:
        _LOG.error(
            "could not cancel Flink job %s on %s: %s; cancel it there (flink cancel JOB_ID)", name, address, error
        )
        return []
    if jobs:
        _LOG.error(
            "Flink job %s (%s) on %s has not ended %.0f s after its cancel",
            ", ".join(jobs),
            name,
            address,
            _CANCEL_WAIT_S,
        )
    return jobs
