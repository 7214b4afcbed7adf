"""The pointer app's model deployment: one model per task, and the message the ingress sends it.

A batch mixes tasks and decoding options; each (task, options) group decodes together. No Ray outside
``services.common``: the deployment is a :class:`~services.common.serving.ModelServer`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from services.common.serving import Answer, Message, ModelServer

from .solver import Options, solve_many


@dataclass
class Solve(Message):
    """Solve ``task`` on ``points`` (checked by the ingress) with ``options``."""

    task: str
    points: list[list[float]]
    options: Options


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})
class PointerSolver(ModelServer):
    """Holds one model per task; a batch mixes tasks and options, each group decodes together."""

    def process_batch(self, requests: list[Solve]) -> list[Answer]:
        results: list[dict[str, Any] | None] = [None] * len(requests)
        groups: dict[tuple[str, Options], list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[(request.task, request.options)].append(i)
        for (task, options), indices in groups.items():
            instances = [np.asarray(requests[i].points) for i in indices]
            answers = solve_many(self.models[task], task, instances, options, self.deadline)
            info = self.infos[task]
            for i, answer in zip(indices, answers):
                results[i] = {**answer, "model": {"name": info.name, "version": info.version}}
        return results  # type: ignore[return-value]
