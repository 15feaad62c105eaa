"""History: finished builds past spec.historyLimit are deleted, oldest first; the newest
build is always kept, and so is a build this pass cancels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from autobuild.api.models import BuildPhase
from autobuild.planning import status as tracking
from autobuild.planning.steps.access import Access
from autobuild.planning.steps.base import Contribution
from autobuild.planning.steps.jobs import Job, Queue

# Deletes only: what is deleted leaves status.builds through the jobs step's records.
OWNS: Final = frozenset[str]()


@dataclass(kw_only=True)
class History(Contribution):
    """The Jobs to delete and the Jobs kept (oldest first)."""

    delete: tuple[Job, ...] = ()
    kept: tuple[Job, ...] = ()


def run(access: Access, queue: Queue) -> History:
    """The Jobs of ``queue`` past the history limits."""
    if access.automated_build is None:
        return History(kept=queue.jobs)
    limit = access.automated_build.spec.history_limit
    jobs = queue.jobs
    cancelled = {j.record.job_name for j in queue.cancel}
    done_ok = [j for j in jobs if not j.new and j.record.phase is BuildPhase.SUCCEEDED]
    done_bad = [
        j
        for j in jobs
        if not j.new and tracking.is_failed(j.record.phase) and j.record.job_name not in cancelled
    ]
    delete = done_ok[: max(0, len(done_ok) - limit.succeeded)]
    delete += done_bad[: max(0, len(done_bad) - limit.failed)]
    newest = jobs[-1].record.job_name if jobs else None
    gone = tuple(j for j in delete if j.record.job_name != newest)
    if not gone:
        return History(kept=jobs)
    names = {j.name for j in gone}
    return History(delete=gone, kept=tuple(j for j in jobs if j.name not in names))


__all__ = ["OWNS", "History", "run"]
