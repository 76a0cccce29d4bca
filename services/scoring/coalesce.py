"""Rows of concurrent requests decided in one model call, for models where that changes nothing.

A request's rows wait only for the rest of the current turn of the event loop: the first one
schedules the call (call_soon) and every request that gets here before it runs joins in. Under
load that is what arrived while the previous call ran; a request alone waits for no one. A tree
ensemble costs about the same for one row as for sixteen (HistGradientBoosting: ~1 ms per call),
so this is where concurrent load stops paying that cost per request.

Only for models whose score for a row does not depend on the other rows of the call (see
`row_wise`): a decision's score must be the same however it was batched, so that re-scoring its
recorded inputs reproduces it to the bit. A logistic regression through sklearn does not qualify:
its matrix product's rounding depends on the batch's shape (measured: 1e-14 differences); the
scoring service's own LR path (exact.ScaledLogistic) takes the product row by row, and does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

MAX_ROWS = 64  # per call: a call blocks the event loop, so keep it near a millisecond or two

# Estimators and transformers whose output row depends only on the input row, computed in an
# order that does not depend on the other rows. Forests are left out: with n_jobs they sum their
# trees in the order threads finish.
ROW_WISE = frozenset({
    "HistGradientBoostingClassifier", "GradientBoostingClassifier", "DecisionTreeClassifier",
    "StandardScaler", "MinMaxScaler", "OneHotEncoder", "OrdinalEncoder", "SimpleImputer",
})


def row_wise(estimator: Any) -> bool:
    """Whether each row's output is independent of the rest of the batch, to the bit."""
    steps = getattr(estimator, "steps", None)
    if type(estimator).__name__ == "Pipeline" and steps is not None:
        return all(row_wise(step) for _, step in steps)
    return type(estimator).__module__.startswith("sklearn.") and type(estimator).__name__ in ROW_WISE


class Coalescer:
    def __init__(self, decide_many: Callable[[Sequence[Any]], list]) -> None:
        self.decide_many = decide_many
        self._pending: list[tuple[Sequence[Any], asyncio.Future]] = []
        self.calls = self.rows = 0  # shared calls made and the rows they decided (for /metrics)

    def decide(self, rows: Sequence[Any]) -> asyncio.Future:
        """The rows' results, from a call shared with the requests of the same turn."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((rows, future))
        if len(self._pending) == 1:
            loop.call_soon(self._run)
        return future

    def _run(self) -> None:
        taken, count = 0, 0
        while taken < len(self._pending) and (taken == 0 or count + len(self._pending[taken][0]) <= MAX_ROWS):
            count += len(self._pending[taken][0])
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._run)
        rows = [row for rows, _ in batch for row in rows]
        self.calls, self.rows = self.calls + 1, self.rows + len(rows)
        try:
            results = self.decide_many(rows)
        except Exception:  # noqa: BLE001 - whose rows failed? Each request alone, then
            for rows, future in batch:
                self._settle(future, rows)
            return
        start = 0
        for rows, future in batch:
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(results[start:start + len(rows)])
            start += len(rows)

    def _settle(self, future: asyncio.Future, rows: Sequence[Any]) -> None:
        if future.done():
            return
        try:
            future.set_result(self.decide_many(rows))
        except Exception as exc:  # noqa: BLE001 - handed to the request, which answers 503
            future.set_exception(exc)
