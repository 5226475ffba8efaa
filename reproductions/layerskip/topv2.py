"""TOPv2 data for the LayerSkip mini reproduction: loading, word-level tokenizer, training batches,
and a small greedy evaluator (exact match, per-layer early-exit next-token accuracy).

The prompt format is the task's (``suite.tasks.topv2.prompt_for``): ``"{utterance} <sep>"``; the
model then produces the whitespace-tokenised parse followed by ``<eos>``. The loss covers only the
parse tokens and the EOS.
"""
from __future__ import annotations

import collections
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from suite.data import DataMissing
from suite.data import data_root as _data_root
from suite.tasks.topv2 import (
    DOMAINS,
    GET_INSTRUCTIONS,
    SEP,
    normalize_parse,
    prompt_for,
    read_rows,
    target_for,
    verified_file,
)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK, SEP)
IGNORE_INDEX = -100

# Pre-tokenisation of raw utterances, chosen so that (a) every whitespace token of a TOPv2 parse
# stays one token (parse round-trip through decode is exact) and (b) utterance words split the way
# the parses split them ("Phoenix?" -> "Phoenix ?", "What's" -> "What 's", "5pm" -> "5 pm",
# "p.m." -> "p.m ."); on the 8 train splits (b) holds for ~96% of utterances exactly.
SPLIT_PATTERN = (r"\d+(?=(?:am|pm)(?:'s|’s)?[?!,.;:]*(?:\s|$))"
                 r"|\S+?(?=(?:'s|’s)?[?!,.;:]*(?:\s|$))|'s|’s|[?!,.;:]+")


@dataclass(frozen=True)
class Row:
    id: str
    domain: str
    utterance: str
    parse: str


def resolve_root(data_root: str | os.PathLike | None = None) -> Path:
    root = _data_root(data_root)
    if root is None:
        raise DataMissing("TOPv2 not found: REPRO_DATA_DIR is not set. " + GET_INSTRUCTIONS)
    return root


def load_split(split: str, domains: Sequence[str] = ("weather",), data_root=None) -> list[Row]:
    """Rows of the official TSVs, in file order, domain after domain."""
    root = resolve_root(data_root)
    out = []
    for d in domains:
        if d not in DOMAINS:
            raise ValueError(f"unknown TOPv2 domain {d!r}; known: {DOMAINS}")
        path = verified_file(d, split, root)  # the official file, sha256-checked (cached)
        out.extend(Row(f"{d}_{split}:{i}", dom, u, p) for i, dom, u, p in read_rows(path))
    return out


# ---------------------------------------------------------------------------------------------
# tokenizer
def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                    pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")])


def build_tokenizer(rows: Iterable[Row], min_freq: int = 1, out_dir: str | os.PathLike | None = None):
    """Word-level tokenizer over the training rows (utterance words + parse tokens).

    Vocabulary order: the specials, then words by descending frequency, ties alphabetical
    (deterministic). Returns a ``PreTrainedTokenizerFast`` that adds ``<bos>`` in front of every
    encoded text; saved with ``save_pretrained`` when ``out_dir`` is given.
    """
    from tokenizers import Tokenizer, models, processors

    pre = _pre_tokenizer()
    counts: collections.Counter[str] = collections.Counter()
    for r in rows:
        counts.update(w for w, _ in pre.pre_tokenize_str(r.utterance))
        counts.update(normalize_parse(r.parse).split())
    words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIALS),
                   key=lambda w: (-counts[w], w))
    vocab = {w: i for i, w in enumerate(list(SPECIALS) + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(list(SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, vocab[BOS])])
    return _wrap(tok, out_dir)


def _wrap(tok, out_dir=None):
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   pad_token=PAD, additional_special_tokens=[SEP],
                                   clean_up_tokenization_spaces=False, model_max_length=4096)
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | os.PathLike):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path))


def decode_parse(tokenizer, ids: Sequence[int]) -> str:
    """Generated ids (no prompt) -> parse text; stops at the first EOS, drops specials."""
    ids = list(ids)
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return normalize_parse(text)


def encode_example(tokenizer, utterance: str, parse: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels): <bos> utterance <sep> parse <eos>; labels are -100 on the prompt."""
    prompt = tokenizer(prompt_for(utterance))["input_ids"]
    target = tokenizer(target_for(parse), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE_INDEX] * len(prompt) + target


# ---------------------------------------------------------------------------------------------
# batches
class TrainBatches:
    """Deterministic, stateless batching: ``batch(step)`` depends only on (seed, step).

    Each epoch is a seeded permutation; within chunks of ``bucket`` batches the examples are
    sorted by length (less padding), and the batch order is shuffled again. Batches are padded to
    their own longest sequence (dynamic padding). ``rank``/``world`` take a strided shard of each
    global batch for data parallelism.
    """

    def __init__(self, encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int,
                 seed: int = 0, bucket: int = 32, max_len: int | None = None):
        if max_len is not None:
            encoded = [(i[:max_len], l[:max_len]) for i, l in encoded]
        self.data = list(encoded)
        if len(self.data) < batch_size:
            raise ValueError(f"{len(self.data)} examples < batch size {batch_size}")
        self.batch_size, self.pad_id, self.seed, self.bucket = batch_size, pad_id, seed, max(1, bucket)
        self.per_epoch = len(self.data) // batch_size  # the remainder is dropped each epoch
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.data)))
        rng.shuffle(order)
        order = order[: self.per_epoch * self.batch_size]
        chunk = self.batch_size * self.bucket
        batches = []
        for s in range(0, len(order), chunk):
            part = sorted(order[s:s + chunk], key=lambda i: (len(self.data[i][0]), i))
            batches += [part[j:j + self.batch_size] for j in range(0, len(part), self.batch_size)]
        rng.shuffle(batches)
        self._epoch_cache = (epoch, batches)
        return batches

    def indices(self, step: int) -> list[int]:
        return self._epoch(step // self.per_epoch)[step % self.per_epoch]

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        idx = self.indices(step)[rank::world]
        return collate([self.data[i] for i in idx], self.pad_id)


def collate(items: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    T = max(len(i) for i, _ in items)
    ids = torch.full((len(items), T), pad_id, dtype=torch.long)
    labels = torch.full((len(items), T), IGNORE_INDEX, dtype=torch.long)
    for b, (i, l) in enumerate(items):
        ids[b, : len(i)] = torch.tensor(i)
        labels[b, : len(l)] = torch.tensor(l)
    return {"input_ids": ids, "labels": labels}


def make_train_batches(tokenizer, rows: Sequence[Row], batch_size: int, seed: int = 0, bucket: int = 32,
                       max_len: int | None = None) -> TrainBatches:
    enc = [encode_example(tokenizer, r.utterance, r.parse) for r in rows]
    return TrainBatches(enc, batch_size, tokenizer.pad_token_id, seed=seed, bucket=bucket, max_len=max_len)


# ---------------------------------------------------------------------------------------------
# evaluation (a plain greedy loop over model.forward; no KV cache needed at this size)
@torch.no_grad()
def greedy_parse_batch(model, tokenizer, utterances: Sequence[str], max_new_tokens: int = 80,
                       exit_layer: int | None = None) -> list[str]:
    """Greedy decode; prompts are grouped by token length so no padding/attention mask is needed.
    ``exit_layer`` = E uses layers 0..E-1 plus the shared head (early exit)."""
    model.eval()
    prompts = [tokenizer(prompt_for(u))["input_ids"] for u in utterances]
    out: list[str] = [""] * len(prompts)
    groups: dict[int, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(prompts):
        groups[len(p)].append(i)
    eos = tokenizer.eos_token_id
    cached = hasattr(model, "setup_cache") and hasattr(model, "run_layers")
    n_layers = model.config.n_layers if cached else None
    for _, idx in sorted(groups.items()):
        x = torch.tensor([prompts[i] for i in idx], dtype=torch.long)
        gen = torch.empty((len(idx), 0), dtype=torch.long)
        done = torch.zeros(len(idx), dtype=torch.bool)
        if cached:  # KV-cached decoding through layers 0..E-1 (E = all layers by default)
            model.setup_cache(x.shape[1] + max_new_tokens + 1, batch_size=len(idx))
            end = exit_layer if exit_layer is not None else n_layers
            pos, step_in = 0, x
        for _ in range(max_new_tokens):
            if cached:
                logits = model.head(model.run_layers(step_in, pos, 0, end)[:, -1])
                pos += step_in.shape[1]
            elif exit_layer is None:
                logits = model(x)[:, -1]
            else:
                logits = model.head(model.forward_train(x)[exit_layer - 1][:, -1])
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            gen = torch.cat([gen, nxt[:, None]], 1)
            if cached:
                step_in = nxt[:, None]
            else:
                x = torch.cat([x, nxt[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
        for j, i in enumerate(idx):
            out[i] = decode_parse(tokenizer, gen[j].tolist())
    return out


@torch.no_grad()
def evaluate(model, tokenizer, rows: Sequence[Row], max_new_tokens: int = 80, exit_layers: Sequence[int] = (),
             batch_size: int = 64) -> dict:
    """Greedy EM (full model and optional early exits) + teacher-forced per-layer next-token accuracy."""
    from .training.early_exit_loss import per_layer_accuracy
    model.eval()
    res: dict = {"n": len(rows)}
    for E in [None, *exit_layers]:
        preds = greedy_parse_batch(model, tokenizer, [r.utterance for r in rows], max_new_tokens, E)
        em = sum(p == normalize_parse(r.parse) for p, r in zip(preds, rows)) / max(1, len(rows))
        res["exact_match" if E is None else f"exact_match_E{E}"] = em
    correct, total = None, 0
    enc = [encode_example(tokenizer, r.utterance, r.parse) for r in rows]
    for s in range(0, len(enc), batch_size):
        b = collate(enc[s:s + batch_size], tokenizer.pad_token_id)
        c, n = per_layer_accuracy(model.forward_train(b["input_ids"]), model.head, b["labels"])
        correct = c if correct is None else [a + x for a, x in zip(correct, c)]
        total += n
    res["next_token_acc_per_layer"] = [c / max(1, total) for c in correct]
    return res


def _main(argv=None):  # python -m reproductions.layerskip.topv2 CKPT_DIR [--n 200] [--exit 2 4]
    import argparse
    import time

    from .checkpoint import load_llama
    ap = argparse.ArgumentParser(description="greedy EM + per-layer accuracy of a TOPv2 checkpoint")
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--split", default="test")
    ap.add_argument("--domains", default="weather")
    ap.add_argument("--exit", type=int, nargs="*", default=[])
    ap.add_argument("--data-root", default=None)
    a = ap.parse_args(argv)
    model = load_llama(a.checkpoint)
    tok = load_tokenizer(a.checkpoint)
    rows = load_split(a.split, a.domains.split(","), a.data_root)[: a.n]
    t0 = time.time()
    res = evaluate(model, tok, rows, exit_layers=a.exit)
    res["eval_wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    _main()
