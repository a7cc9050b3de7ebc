"""A model behind a JSON HTTP API, queried as a black box with a budget, timeouts and retries.

Request (POST to ``url``)::

    {"inputs": [[...], [...]]}            # one nested list per row, in the model's input shape

Response, one of::

    {"probabilities": [[p0, p1, ...], ...]}   # score-based: every attack that needs scores
    {"predictions": ["cat", "dog", ...]}      # label-only: decision-based attacks only

The field names are options (``input_field``, ``output_field``). Each row sent counts as one
query against ``query_budget``; a request that would exceed it raises
:class:`~riskloop.targets.base.QueryBudgetExceeded` before anything is sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import numpy as np

from ..errors import InputError
from .base import ACCESS_BLACK, ACCESS_LABEL, InputSpec, QueryBudgetExceeded, as_probabilities

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 502, 503, 504}


class HttpTarget:
    """Black-box target served over HTTP (JSON)."""

    def __init__(
        self,
        url: str,
        *,
        classes: tuple[str, ...] | list[str],
        input_spec: InputSpec,
        query_budget: int | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        batch_size: int = 256,
        headers: dict[str, str] | None = None,
        input_field: str = "inputs",
        output_field: str | None = None,
        label_only: bool = False,
        client: httpx.Client | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"bad target URL '{url}': expected http://HOST:PORT/PATH")
        if query_budget is not None and query_budget < 1:
            raise InputError(f"bad query budget {query_budget}: must be a positive number of rows")
        self.url = url
        self.classes = tuple(str(c) for c in classes)
        self.input_spec = input_spec
        self.query_budget = query_budget
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.batch_size = int(batch_size)
        self.input_field = input_field
        self.output_field = output_field
        self.access = ACCESS_LABEL if label_only else ACCESS_BLACK
        self.queries = 0
        self.requests = 0
        self._client = client or httpx.Client(timeout=timeout, headers=headers or {})

    @property
    def budget_left(self) -> int | None:
        return None if self.query_budget is None else self.query_budget - self.queries

    def close(self) -> None:
        self._client.close()

    def check_reachable(self) -> None:
        """One real query with one row of the valid range's midpoint; raises InputError if down."""
        spec = self.input_spec
        lo, hi = spec.lower_array(), spec.upper_array()
        mid = np.where(np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2, 0.0).astype(np.float32)
        self.predict_proba(mid[None])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        if self.query_budget is not None and self.queries + n > self.query_budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.query_budget} rows for '{self.url}' is spent "
                f"({self.queries} used, {n} more asked): raise the budget or attack fewer points"
            )
        outs = [self._post(X[i : i + self.batch_size]) for i in range(0, n, self.batch_size)]
        self.queries += n
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)))

    def _post(self, chunk: np.ndarray) -> np.ndarray:
        body = {self.input_field: np.asarray(chunk, dtype=np.float32).tolist()}
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            self.requests += 1
            if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                raise InputError(
                    f"HTTP target '{self.url}' refused the request (HTTP {resp.status_code}: "
                    f"{resp.text[:120]!r}): check the URL and input format"
                )
            return self._parse(resp, len(chunk))
        raise InputError(
            f"HTTP target '{self.url}' is unreachable ({last}, {self.retries + 1} attempts): "
            "start the server or check the URL"
        )

    def _parse(self, resp: httpx.Response, rows: int) -> np.ndarray:
        try:
            data: Any = resp.json()
        except ValueError:
            raise InputError(f"HTTP target '{self.url}' did not answer JSON") from None
        field = self.output_field
        if field is None:
            field = next((f for f in ("probabilities", "predictions", "labels") if f in data), None)
        if not isinstance(data, dict) or field not in data:
            raise InputError(
                f"HTTP target '{self.url}' answered without 'probabilities' or 'predictions'"
            )
        values = data[field]
        if len(values) != rows:
            raise InputError(f"HTTP target '{self.url}' answered {len(values)} rows for {rows}")
        if field == "probabilities":
            return as_probabilities(np.asarray(values, dtype=np.float64), where=f"'{self.url}'")
        self.access = ACCESS_LABEL
        index = {c: i for i, c in enumerate(self.classes)}
        onehot = np.zeros((rows, len(self.classes)))
        for r, label in enumerate(values):
            key = str(label)
            if key not in index:
                raise InputError(f"HTTP target '{self.url}' answered unknown class {key!r}")
            onehot[r, index[key]] = 1.0
        return onehot
