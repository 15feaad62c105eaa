"""Failure logs: a failed build whose log tail (the termination message) named no known
failure has the head of its log classified, once; the answer is kept in status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from autobuild.api.conditions import Reason
from autobuild.api.models import BuildPhase, BuildRecord
from autobuild.planning.snapshot import LogRead, Obj
from autobuild.planning.steps.base import Contribution, World

# The cause of a failed build classified from its log (records that failed with Error).
OWNS: Final = frozenset({"builds[Failed].reason", "builds[Failed].message"})


@dataclass(kw_only=True)
class FailureLogs(Contribution):
    """The records (newest first) with the causes found, and the logs to read."""

    records: tuple[BuildRecord, ...] = ()
    reads: tuple[LogRead, ...] = ()


def run(
    world: World, records: Sequence[BuildRecord], pods_by_job: Mapping[str, Sequence[Obj]]
) -> FailureLogs:
    """Classify the failed ``records`` whose cause is unknown (Error) from their log head."""
    logs = world.snapshot.logs
    out: list[BuildRecord] = []
    reads: list[LogRead] = []
    for record in records:
        if record.phase is not BuildPhase.FAILED or record.reason != Reason.ERROR:
            out.append(record)
            continue
        before = world.previous_builds.get(record.id)
        if before is not None and before.reason not in (None, Reason.ERROR):
            carried = {"reason": before.reason, "message": before.message}
            out.append(record.model_copy(update=carried))
        elif record.job_name in logs:
            found = logs[record.job_name]
            if found is None:
                out.append(record)
            else:
                update = {"reason": found[0], "message": f"{found[1]}; {record.message}"}
                out.append(record.model_copy(update=update))
        else:
            pods = sorted(
                pods_by_job.get(record.job_name, ()),
                key=lambda p: str(p["metadata"].get("creationTimestamp", "")),
            )
            if pods:
                reads.append(LogRead(record.job_name, str(pods[-1]["metadata"]["name"])))
            out.append(record)
    return FailureLogs(records=tuple(out), reads=tuple(reads))


__all__ = ["OWNS", "FailureLogs", "run"]
