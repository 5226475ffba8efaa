"""Training configuration and the paper's per-experiment LayerSkip settings (§5, Tables 8–10)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

VARIANTS = ("baseline", "ld", "ee", "ld+ee")


@dataclass(frozen=True)
class TrainConfig:
    # model shape (Llama-style)
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int | None = None
    intermediate_size: int | None = None  # default: ~8/3·dim rounded up to a multiple of 64
    max_seq_len: int = 128
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    # LayerSkip
    variant: str = "ld+ee"  # baseline | ld | ee | ld+ee
    p_max: float = 0.2
    dropout_depth: str = "exp"  # D(l): exp | linear | uniform
    dropout_schedule: str = "constant"  # S(t): constant (finetune/continual) | exp (from scratch)
    e_scale: float = 1.0
    scale_type: str = "sum_l"
    curriculum: str = "gradual"  # none | rotational | gradual
    rotation: int = 1  # R for the rotational curriculum
    # optimisation
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    decay: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    steps: int = 600
    batch_size: int = 64  # global batch (split over data-parallel ranks)
    seed: int = 0
    precision: str = "auto"
    """Autocast dtype: ``auto`` = bf16 where the hardware computes it natively (a bf16 GPU, or a CPU with
    AVX512-BF16/AMX), else fp32 (bf16 autocast is several times slower on CPUs without it); or float32 /
    bfloat16 / float16 to force one."""
    # data (TOPv2)
    domains: tuple[str, ...] = ("weather",)
    bucket_batches: int = 32  # length bucketing: sort within chunks of this many batches
    # bookkeeping
    log_every: int = 20
    loss_record_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 1
    threads: int | None = None
    setting: str | None = None

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.n_layers < 1 or self.dim % self.n_heads:
            raise ValueError("bad model shape")
        object.__setattr__(self, "domains", tuple(self.domains))
        object.__setattr__(self, "betas", tuple(self.betas))

    # what the variant actually switches on
    @property
    def uses_layer_dropout(self) -> bool:
        return self.variant in ("ld", "ld+ee") and self.p_max > 0

    @property
    def uses_early_exit(self) -> bool:
        return self.variant in ("ee", "ld+ee")

    @property
    def effective_p_max(self) -> float:
        return self.p_max if self.uses_layer_dropout else 0.0

    @property
    def effective_curriculum(self) -> str:
        return self.curriculum if self.uses_early_exit else "last"

    @property
    def ffn_size(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        return ((8 * self.dim // 3) + 63) // 64 * 64

    def replace(self, **kw: Any) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["domains"] = list(self.domains)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        if "bf16" in d and "precision" not in d:  # records written before ``precision`` existed
            d = {**d, "precision": "bfloat16" if d["bf16"] else "float32"}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


# The paper's recipe per experiment (arXiv 2404.16710v4 §4-5 and Tables 8–10; docs/papers/layerskip.md).
# batch = per-device batch size; lr from Table 9 (the with-layer-dropout value where it differs).
SETTINGS: dict[str, dict[str, Any]] = {
    "continual-pretrain-llama2-7b": dict(p_max=0.1, e_scale=0.2, curriculum="rotational", rotation=8,
                                         dropout_schedule="constant", lr=3e-5, batch_size=4, steps=50_000,
                                         dim=4096, n_layers=32, n_heads=32, max_seq_len=4096),
    "continual-pretrain-llama2-13b": dict(p_max=0.1, e_scale=0.1, curriculum="rotational", rotation=39,
                                          dropout_schedule="constant", lr=2e-5, batch_size=4, steps=50_000,
                                          dim=5120, n_layers=40, n_heads=40, max_seq_len=4096),
    "continual-pretrain-llama3-8b": dict(p_max=0.1, e_scale=0.1, curriculum="rotational", rotation=8,
                                         dropout_schedule="constant", n_layers=32),
    "continual-pretrain-llama3.2-1b": dict(p_max=0.1, e_scale=0.1, curriculum="rotational", rotation=8,
                                           dropout_schedule="constant", n_layers=16),
    "pretrain-llama2-1.5b": dict(p_max=0.1, e_scale=0.2, curriculum="rotational", rotation=23,
                                 dropout_schedule="exp", lr=8e-4, batch_size=4, steps=50_000,
                                 dim=2048, n_layers=24, n_heads=16, max_seq_len=4096),
    "pretrain-llama2-7b": dict(p_max=0.2, e_scale=0.2, curriculum="rotational", rotation=31,
                               dropout_schedule="exp", lr=8e-4, batch_size=4, steps=50_000,
                               dim=4096, n_layers=32, n_heads=32, max_seq_len=4096),
    "code-finetune-llama1-7b": dict(p_max=0.1, e_scale=1.0, curriculum="rotational", rotation=16,
                                    dropout_schedule="constant", lr=1e-4, batch_size=4, steps=10_000,
                                    dim=4096, n_layers=32, n_heads=32, max_seq_len=2048),
    "topv2-finetune": dict(p_max=0.2, e_scale=1.0, curriculum="gradual",
                           dropout_schedule="constant", lr=1e-4, batch_size=32, steps=5_800,
                           dim=2048, n_layers=24, n_heads=16, max_seq_len=4096),
}

# Keys of a setting that are the LayerSkip recipe proper (as opposed to scale/optimisation).
RECIPE_KEYS = ("p_max", "e_scale", "curriculum", "rotation", "dropout_schedule")


def setting(name: str, *, recipe_only: bool = False, **overrides: Any) -> TrainConfig:
    """A TrainConfig for one of the paper's settings; ``recipe_only`` keeps only the LayerSkip knobs
    (p_max, e_scale, curriculum, R, S(t)) so a mini model can take its own shape and optimiser."""
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name!r}; known: {sorted(SETTINGS)}")
    base = SETTINGS[name]
    if recipe_only:
        base = {k: v for k, v in base.items() if k in RECIPE_KEYS}
    return TrainConfig(**{**base, "setting": name, **overrides})
