"""Plans: a spec's stages cut into streaming segments at barrier stages.

``read → extract → lid → gopher → [exact dedup] → pii → write`` becomes two segments:

- segment 0: read → extract → lid → gopher, then ``exact dedup.map`` on each shard
  (artifacts keyed by ``doc_id``); its rows go to an intermediate shard;
- barrier: ``exact dedup.reduce`` over all artifacts → ``state/<name>/``;
- segment 1: ``exact dedup.apply`` → pii → final shard.

Only a stage that needs the whole input cuts a segment: a ``BarrierStage`` whose
``needs_barrier`` is false (``filter.threshold`` with fixed ``min``/``max``) streams like
any filter, with no extra write and read of the corpus.

Every segment maps input shard *i* to output shard *i*, so resume markers, output names and
artifact names all derive from (segment, shard, spec hash), never from worker rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.stage import BarrierStage, Stage


@dataclass
class Segment:
    index: int
    #: barrier whose ``apply`` runs first in this segment (its reduce ran before it)
    barrier_in: BarrierStage | None = None
    stages: list[Stage] = field(default_factory=list)
    #: barrier whose ``map`` runs last in this segment (its reduce runs after it)
    barrier_out: BarrierStage | None = None

    def all_stages(self) -> list[Stage]:
        return ([self.barrier_in] if self.barrier_in else []) + self.stages


@dataclass
class Plan:
    segments: list[Segment]

    @property
    def barriers(self) -> list[BarrierStage]:
        return [s.barrier_out for s in self.segments if s.barrier_out is not None]


def make_plan(stages: list[Stage]) -> Plan:
    segments = [Segment(0)]
    for st in stages:
        if isinstance(st, BarrierStage) and st.needs_barrier:
            segments[-1].barrier_out = st
            segments.append(Segment(len(segments), barrier_in=st))
        else:
            segments[-1].stages.append(st)
    return Plan(segments)
