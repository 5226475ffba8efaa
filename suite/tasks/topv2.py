"""TOPv2 task-oriented semantic parsing (Chen et al., EMNLP 2020), as used by LayerSkip §5/Table 6.

Official format: ``{domain}_{split}.tsv`` files with the header
``domain<TAB>utterance<TAB>semantic_parse``. The metric is exact match of the full
parse string after whitespace normalisation (the paper reports EM; note that the
official LayerSkip ``benchmark.py`` "exact_match" is really an edit distance).

The prompt format lives here so that the training code can import it from the task
(tasks never import a reproduction).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Sequence

from suite.data import DataFile
from suite.interfaces import Example, Generation, GenerationRequest

DOMAINS = ("alarm", "event", "messaging", "music", "navigation", "reminder", "timer", "weather")
SPLITS = ("train", "eval", "test")
SPLIT_ALIASES = {"validation": "eval", "valid": "eval", "dev": "eval"}

SEP = "<sep>"
"""Separator token between the utterance and the parse (a special token of the tokenizer)."""
MAX_NEW_TOKENS = 80
"""The paper's Table 6 latency setting generates the next 80 tokens; every TOPv2 parse fits."""

DATA_SUBDIR = "topv2/TOPv2_Dataset"
GET_INSTRUCTIONS = (
    "TOPv2 is not downloadable file by file. Get the official release from "
    "https://fb.me/TOPv2Dataset (zip with TOPv2_Dataset/{domain}_{train,eval,test}.tsv; "
    "the same test rows are the HF dataset WillHeld/top_v2), unpack it so that "
    "$REPRO_DATA_DIR/topv2/TOPv2_Dataset/weather_test.tsv exists, and set REPRO_DATA_DIR "
    "(or pass --data-root)")

# sha256 of the official V1.1 files (as vendored in the shared data dir's SHA256SUMS).
SHA256 = {
    "alarm_eval": "9b80c3b3430c6378fa566f76f6ef5aa31156599f362a8896922839ebeedaa4a3",
    "alarm_test": "96ce58ce1944f2f94b37477a18aa31b70b54aad0505eb7688d613fbd6415818c",
    "alarm_train": "920483ba7ae051f95f69692deb77c80e66a105005ed5e49a3a043e9ffd155db5",
    "event_eval": "1fb48c8aeb5bf3c6bb35ed206979adb2c8ef55fe7b0caf49424ebd75041e05d8",
    "event_test": "9b67d4ed5cfe63c7899be66f523ec33de04352e6a16c35b9c2a5c322ec4548fc",
    "event_train": "8c81d6680e7b72ca43be52702654839400678025ac1e6df9f352cb348180bdd8",
    "messaging_eval": "a9f8761b0add1e8e1b46a8a53915b5101e48135983f199948cef9fed346e6b63",
    "messaging_test": "e3d25346286bb9a514b325e18ec0045cef2eb58f45273d1deff088aa677cefec",
    "messaging_train": "1f23f321ce36884d05931ca78eeb0823aaae13047d8099ba68e32e8656c2cf02",
    "music_eval": "27d3ce7a63b13a91a1dd86292a269ff26e20c7895cd9789da2cc6f0a03de67cc",
    "music_test": "c080a8f350cf5df6642d0f0e6e0a19c5ac682a8d9c912a0b57a5f0d1f01b44a0",
    "music_train": "0abb87d11edc98d4be9b20879ec892d3fdcb0cd8d2bf4da06eef5e997c578d3c",
    "navigation_eval": "308c95b88b9bad1d5cd5d3904f702dc03160829ada32f7eaff131d60f85588b7",
    "navigation_test": "bf1bd7915932fac8452149f8b69f290e253b3eb1574e1557a7f7a9a156174fd2",
    "navigation_train": "b486903314e4d2f011eeeef95f31f1eccdd8bf7aa538a2b003a23f9dd44b0b5a",
    "reminder_eval": "dea5c9deb676676eeeede7036aa07f664f9d2e5a6b37b7fd8f3d2c6b171ecebf",
    "reminder_test": "e6bc68ac371e7755753f455dcef5e42d4bf960c08f72beb094e4bc0940b7f925",
    "reminder_train": "689f0934456b9b85d8d0d256425b86362f2bd349756d531a71958edd1b6e6ac1",
    "timer_eval": "463bfeef6621b90a1c471916653fc420c219f8f65b38359a442485caa9e794a9",
    "timer_test": "aa04c18cce9d02456f2a21f5fe8b8088a3470529b88db5ee35640110bddd74c9",
    "timer_train": "d630abdde12cade9230434714f3f2f0ca8f75c8c00a6b6a5f5dfeb3100cf996f",
    "weather_eval": "f6672529ab85c1415cd5a5d3045551176799605fba9e132fdd9d11adb93b908e",
    "weather_test": "e4aa02ae0d3bad627c499d58365f34f37939153c832d30ee90725b745d74e9df",
    "weather_train": "fd683b775602ec88d3fc7ca442c060ff33aacb710eaed3e517c8691835ae1018",
}


def prompt_for(utterance: str) -> str:
    """The text a model sees: the raw utterance, then the separator; the parse follows."""
    return f"{utterance.strip()} {SEP}"


def target_for(parse: str) -> str:
    """The text a model must produce after the prompt (EOS is appended by the tokenizer side)."""
    return normalize_parse(parse)


def normalize_parse(text: str) -> str:
    return " ".join(text.split())


def canonical_split(split: str) -> str:
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"TOPv2 split must be one of {SPLITS} (or {tuple(SPLIT_ALIASES)}), got {split!r}")
    return split


def data_file(domain: str, split: str) -> DataFile:
    split = canonical_split(split)
    if domain not in DOMAINS:
        raise ValueError(f"unknown TOPv2 domain {domain!r}; known: {DOMAINS}")
    return DataFile(relpath=f"{DATA_SUBDIR}/{domain}_{split}.tsv", sha256=SHA256[f"{domain}_{split}"],
                    instructions=GET_INSTRUCTIONS)


def read_rows(path: Path) -> Iterator[tuple[int, str, str, str]]:
    """(row index from 0 after the header, domain, utterance, semantic_parse) in file order."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if [h.strip() for h in header[:3]] != ["domain", "utterance", "semantic_parse"]:
            raise ValueError(f"{path}:1: unexpected header {header} (expected domain, utterance, semantic_parse)")
        for i, row in enumerate(reader):
            if len(row) != 3:
                raise ValueError(f"{path}:{reader.line_num}: row has {len(row)} columns, expected 3 "
                                 f"(domain, utterance, semantic_parse)")
            yield i, row[0], row[1], row[2]


def verified_file(domain: str, split: str, data_root: Path | None) -> Path:
    """The official TSV, or a one-line error if its sha256 differs (cached by path, size and mtime)."""
    from suite.checksums import verify

    df = data_file(domain, split)
    return verify(df.resolve(data_root, download=False), df.sha256, f"TOPv2 {Path(df.relpath).name}")


class TopV2Task:
    name = "topv2"
    main_metric = "exact_match"

    def __init__(self, domains: Sequence[str] | str = DOMAINS, max_new_tokens: int = MAX_NEW_TOKENS,
                 check_sha256: bool = True, sample: int | None = None, sample_seed: int = 0):
        self.check_sha256 = bool(check_sha256)
        """False only for hand-made TSVs (tests); it is a task option, so it is part of the run spec."""
        self.sample = None if sample is None else int(sample)
        """Evaluate a seeded random subset of this many examples, kept in file order (LayerSkip Table 6 times
        1,000 sampled examples); None = every example."""
        self.sample_seed = int(sample_seed)
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"topv2: sample must be >= 1, got {self.sample}")
        if isinstance(domains, str):
            domains = tuple(d for d in domains.split(",") if d)
        self.domains = tuple(domains)
        for d in self.domains:
            if d not in DOMAINS:
                raise ValueError(f"unknown TOPv2 domain {d!r}; known: {DOMAINS}")
        self.max_new_tokens = int(max_new_tokens)

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        if self.check_sha256:
            return [verified_file(d, split, data_root) for d in self.domains]
        return [data_file(d, split).resolve(data_root, download=False) for d in self.domains]

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        every = self._all_examples(split, data_root)
        if self.sample is None:
            yield from every
            return
        rows = list(every)
        import random

        keep = set(random.Random(self.sample_seed).sample(range(len(rows)), min(self.sample, len(rows))))
        yield from (ex for i, ex in enumerate(rows) if i in keep)

    def _all_examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        split = canonical_split(split)
        for domain, path in zip(self.domains, self.data_files(split, data_root)):
            for i, dom, utt, parse in read_rows(path):
                yield Example(id=f"{domain}_{split}:{i}",
                              data={"domain": dom, "utterance": utt, "semantic_parse": parse})

    def request(self, example: Example) -> GenerationRequest:
        return GenerationRequest(prompt=prompt_for(example.data["utterance"]),
                                 max_new_tokens=self.max_new_tokens, stop=("\n",))

    def score(self, example: Example, output: Generation) -> dict[str, float]:
        ok = normalize_parse(output.text) == normalize_parse(example.data["semantic_parse"])
        return {"exact_match": 1.0 if ok else 0.0}
