"""Reference systems that prove the pipeline without a model.

``oracle`` answers with the reference solution, so a correct pipeline must score
it perfectly; ``wrong`` answers with something that can never be right, so a
correct pipeline must score it zero. Together they catch scorers that always
pass or always fail.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from suite.interfaces import Example, Generation, RunContext

_REFERENCE_FIELDS = ("canonical_solution", "semantic_parse", "highlights", "reference")


class OracleSystem:
    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        self.delay_s = float(params.get("delay_s", 0.0))
        """Artificial latency, used by tests that kill a run mid-way."""

    def identity(self) -> Mapping[str, Any]:
        return {"kind": "oracle"}

    def generate(self, request: Any, example: Example) -> Generation:
        if self.delay_s:
            time.sleep(self.delay_s)
        for key in _REFERENCE_FIELDS:
            if key in example.data:
                return Generation(text=example.data[key], stats={"generated_tokens": 0.0})
        raise KeyError(f"oracle: example {example.id} has none of the reference fields {_REFERENCE_FIELDS}")


class WrongSystem:
    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        pass

    def identity(self) -> Mapping[str, Any]:
        return {"kind": "wrong"}

    def generate(self, request: Any, example: Example) -> Generation:
        return Generation(text='    raise NotImplementedError("wrong on purpose")\n',
                          stats={"generated_tokens": 0.0})
