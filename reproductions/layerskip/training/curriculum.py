"""Early-exit curricula C(t, l) (LayerSkip §4.1): which layers get an early-exit loss at step t.

Usage in a training loop: ``mask = cur.get()`` for the current step, then ``cur.step()`` after the
optimizer step. ``state_dict()`` / ``load_state_dict()`` make them resumable.
"""
from __future__ import annotations

from typing import Any


class Curriculum:
    def __init__(self, n_layers: int):
        if n_layers < 1:
            raise ValueError("n_layers must be >= 1")
        self.n_layers = n_layers
        self.t = 0

    def mask_at(self, t: int) -> list[bool]:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self) -> list[bool]:
        m = self.mask_at(self.t)
        m[-1] = True  # the last layer is always trained
        return m

    def step(self) -> None:
        self.t += 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "n_layers": self.n_layers, "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != type(self).__name__ or state.get("n_layers") != self.n_layers:
            raise ValueError(f"curriculum state {state} does not match {type(self).__name__}({self.n_layers})")
        self.t = int(state["t"])


class NoCurriculum(Curriculum):
    """Every layer's early exit is trained at every step (the paper's C(t, l) = 1)."""

    def mask_at(self, t: int) -> list[bool]:
        return [True] * self.n_layers


class LastLayerOnly(Curriculum):
    """Only the last layer: the baseline and the layer-dropout-only variant."""

    def mask_at(self, t: int) -> list[bool]:
        return [False] * self.n_layers


class RotationalCurriculum(Curriculum):
    """C_rot,R: every R-th layer, the pattern shifting by one layer each step.

    Layer l is enabled at step t iff (l − t) mod R == 0, so each layer is enabled once every R
    steps and ⌈L/R⌉ (+ the always-on last layer) exits are computed per step.
    """

    def __init__(self, n_layers: int, rotation: int):
        super().__init__(n_layers)
        if rotation < 1:
            raise ValueError("rotation R must be >= 1")
        self.rotation = rotation

    def mask_at(self, t: int) -> list[bool]:
        return [(l - t) % self.rotation == 0 for l in range(self.n_layers)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rotation": self.rotation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rotation") != self.rotation:
            raise ValueError(f"rotation {state.get('rotation')} != {self.rotation}")
        super().load_state_dict(state)


class GradualCurriculum(Curriculum):
    """C_grad: exits switched on from the last layer down to the first over the first half of training.

    Layer i is enabled once t/T >= 0.5·(L − i)/L (as in torchtune), i.e. one more layer every
    T/(2L) steps; from t = T/2 on every layer is enabled. The last layer is always enabled.
    """

    def __init__(self, n_layers: int, total_steps: int):
        super().__init__(n_layers)
        if total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        self.total_steps = total_steps

    def mask_at(self, t: int) -> list[bool]:
        L, T = self.n_layers, self.total_steps
        # t/T >= 0.5 (L-i)/L  <=>  2·L·t >= T·(L-i), exact in integers
        return [2 * L * t >= T * (L - i) for i in range(L)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("total_steps") != self.total_steps:
            raise ValueError(f"total_steps {state.get('total_steps')} != {self.total_steps}")
        super().load_state_dict(state)


CURRICULA = ("none", "last", "rotational", "gradual")


def make_curriculum(kind: str, n_layers: int, *, rotation: int = 1, total_steps: int = 1) -> Curriculum:
    if kind == "none":
        return NoCurriculum(n_layers)
    if kind == "last":
        return LastLayerOnly(n_layers)
    if kind in ("rot", "rotational"):
        return RotationalCurriculum(n_layers, rotation)
    if kind in ("grad", "gradual"):
        return GradualCurriculum(n_layers, total_steps)
    raise ValueError(f"unknown curriculum {kind!r}; known: {CURRICULA}")
