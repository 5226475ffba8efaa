"""Locating WordNet 3.0 and a fast in-memory view of its noun hierarchy.

Why this module exists:

* corenet gets WordNet through ``python -m nltk.downloader all``, which needs
  the network. CI and air-gapped machines get the same WordNet 3.0 database
  from Debian (``apt-get install wordnet-base wordnet-sense-index`` puts it in
  ``/usr/share/wordnet``). NLTK's reader also needs a ``lexnames`` file that
  Debian does not ship, and NLTK refuses symlinked layouts in some versions,
  so we build a real NLTK data dir (copied files + generated ``lexnames``)
  in a cache directory once.
* NLTK's ``wn.synset(...)`` and corenet's ``list.index`` look-ups are slow per
  word. Label extraction and Transfer Init only need three facts per noun
  synset (its lemmas, its first lemma, its hypernyms), so we parse
  ``index.noun``/``data.noun`` once into dicts (~1 s) and answer everything
  with dictionary look-ups. NLTK stays the reference we test against.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

WORDNET_VERSION = "3.0"

# The 45 lexicographer file names of WordNet 3.0 (lexnames(5WN)), numbered
# 00-44, with their syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
_LEXNAMES = [
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1),
    ("noun.act", 1), ("noun.animal", 1), ("noun.artifact", 1),
    ("noun.attribute", 1), ("noun.body", 1), ("noun.cognition", 1),
    ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1),
    ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1),
    ("noun.phenomenon", 1), ("noun.plant", 1), ("noun.possession", 1),
    ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1),
    ("noun.time", 1), ("verb.body", 2), ("verb.change", 2),
    ("verb.cognition", 2), ("verb.communication", 2), ("verb.competition", 2),
    ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2),
    ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2),
    ("verb.weather", 2), ("adj.ppl", 3),
]

_REQUIRED = [
    "index.noun", "index.verb", "index.adj", "index.adv",
    "data.noun", "data.verb", "data.adj", "data.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
]
_OPTIONAL = ["index.sense", "cntlist.rev", "LICENSE", "README", "citation.bib"]

SYSTEM_WORDNET_DIRS = ("/usr/share/wordnet", "/usr/local/WordNet-3.0/dict")

MISSING_MESSAGE = (
    "WordNet 3.0 not found: run `apt-get install -y wordnet-base wordnet-sense-index` "
    "(offline, Debian) or `python -c \"import nltk; nltk.download('wordnet')\"` (online), "
    "or set REPRO_WORDNET_DIR to a WordNet dict directory"
)


class WordNetMissing(RuntimeError):
    """Raised with a one-line how-to when no WordNet can be found."""


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(_LEXNAMES))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "repro" / "nltk_data"


def _is_wordnet_dir(d: Path) -> bool:
    return d.is_dir() and all((d / f).is_file() for f in _REQUIRED)


def build_nltk_wordnet(src: Path, dest_root: Path | None = None) -> Path:
    """Copy a WordNet dict dir into ``<dest_root>/corpora/wordnet`` + lexnames.

    Files are copied, not symlinked: NLTK's path pointers resolve links and
    some versions then look for ``lexnames`` next to the link target.
    """
    dest_root = Path(dest_root) if dest_root else cache_dir()
    dest = dest_root / "corpora" / "wordnet"
    if _is_wordnet_dir(dest) and (dest / "lexnames").is_file():
        return dest_root
    tmp = dest.with_name("wordnet.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in _REQUIRED + _OPTIONAL:
        if (src / f).is_file():
            shutil.copyfile(src / f, tmp / f)
    if (src / "lexnames").is_file():
        shutil.copyfile(src / "lexnames", tmp / "lexnames")
    else:
        (tmp / "lexnames").write_text(lexnames_text())
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest_root


def _nltk_has_wordnet() -> bool:
    try:
        import nltk
        nltk.data.find("corpora/wordnet")
        return True
    except LookupError:
        pass
    try:  # a downloaded but not unzipped wordnet.zip
        import nltk
        nltk.data.find("corpora/wordnet.zip")
        return True
    except LookupError:
        return False


@lru_cache(maxsize=1)
def ensure_wordnet() -> str:
    """Make ``nltk.corpus.wordnet`` usable; return a description of the source.

    Order: REPRO_WORDNET_DIR, any NLTK data dir, our cache dir, a system
    WordNet dict (copied into the cache dir). Raises WordNetMissing otherwise.
    """
    import nltk

    env = os.environ.get("REPRO_WORDNET_DIR")
    if env and _is_wordnet_dir(Path(env)):
        root = build_nltk_wordnet(Path(env))
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
        return f"copied from {env} into {root}"
    cached = cache_dir()
    if str(cached) not in nltk.data.path:
        nltk.data.path.append(str(cached))
    if _nltk_has_wordnet():
        return "nltk data: " + str(nltk.data.find("corpora/wordnet"))
    for d in SYSTEM_WORDNET_DIRS:
        if _is_wordnet_dir(Path(d)):
            build_nltk_wordnet(Path(d), cached)
            return f"copied from {d} into {cached}"
    raise WordNetMissing(MISSING_MESSAGE)


def wordnet_available() -> bool:
    try:
        ensure_wordnet()
        return True
    except WordNetMissing:
        return False


def nltk_wordnet():
    """NLTK's WordNet reader (the reference implementation)."""
    ensure_wordnet()
    from nltk.corpus import wordnet as wn
    wn.ensure_loaded()
    return wn


def _open_text(name: str):
    import nltk
    ptr = nltk.data.find("corpora/wordnet")
    return ptr.join(name).open(encoding="utf-8") if hasattr(ptr, "join") else open(os.path.join(ptr, name), encoding="utf-8")


def wnid(offset: int) -> str:
    """ImageNet-style id (zero padded), e.g. n02084071."""
    return f"n{offset:08d}"


def corenet_id(offset: int) -> str:
    """corenet's synset id: pos + unpadded offset, e.g. n2084071."""
    return f"n{offset}"


def parse_wnid(s: str) -> int:
    s = s.strip()
    if len(s) < 2 or s[0] != "n" or not s[1:].isdigit():
        raise ValueError(f"not a noun synset id: {s!r}")
    return int(s[1:])


@dataclass
class NounIndex:
    """WordNet 3.0 nouns as plain dicts; built once per process."""

    lemma_offsets: dict[str, list[int]] = field(default_factory=dict)  # lemma -> sense offsets
    first_lemma: dict[int, str] = field(default_factory=dict)          # offset -> head lemma (lowercase)
    hypernyms: dict[int, tuple[int, ...]] = field(default_factory=dict)  # @ and @i pointers
    source_sha256: str = ""

    def synset_name(self, offset: int) -> str:
        lemma = self.first_lemma[offset]
        return f"{lemma}.n.{self.lemma_offsets[lemma].index(offset) + 1:02d}"

    def first_sense(self, lemma: str) -> int | None:
        """corenet's rule: ``wn.synset(lemma + '.n.01')`` and keep it only when
        its name is exactly ``lemma.n.01`` (the head lemma is this lemma)."""
        offs = self.lemma_offsets.get(lemma)
        if not offs:
            return None
        off = offs[0]
        return off if self.first_lemma.get(off) == lemma else None

    @lru_cache(maxsize=None)  # noqa: B019 - one NounIndex per process (noun_index() caches it), never freed anyway
    def ancestors(self, offset: int) -> dict[int, int]:
        """Shortest hypernym distance to every ancestor (incl. itself), the
        BFS NLTK uses for ``path_similarity`` (hypernyms + instance hypernyms)."""
        dist: dict[int, int] = {}
        q = deque([(offset, 0)])
        while q:
            s, d = q.popleft()
            if s in dist:
                continue
            dist[s] = d
            for h in self.hypernyms.get(s, ()):
                q.append((h, d + 1))
        return dist

    def path_similarity(self, a: int, b: int) -> float:
        da, db = self.ancestors(a), self.ancestors(b)
        if len(da) > len(db):
            da, db = db, da
        best = min((d + db[c] for c, d in da.items() if c in db), default=None)
        return 0.0 if best is None else 1.0 / (best + 1)

    def __hash__(self):  # for lru_cache on methods
        return id(self)


@lru_cache(maxsize=1)
def noun_index() -> NounIndex:
    ensure_wordnet()
    idx = NounIndex()
    h = hashlib.sha256()
    with _open_text("index.noun") as f:
        for line in f:
            if line.startswith(" "):
                continue
            h.update(line.encode())
            parts = line.split()
            lemma, n_synsets, p_cnt = parts[0], int(parts[2]), int(parts[3])
            offs = parts[4 + p_cnt + 2:]
            idx.lemma_offsets[lemma] = [int(o) for o in offs[:n_synsets]]
    with _open_text("data.noun") as f:
        for line in f:
            if line.startswith(" "):
                continue
            parts = line.split(" ", 6)
            off = int(parts[0])
            w_cnt = int(parts[3], 16)
            rest = line.split("|", 1)[0].split()
            idx.first_lemma[off] = rest[4].lower()
            k = 4 + 2 * w_cnt
            p_cnt = int(rest[k])
            hyps = []
            for j in range(p_cnt):
                sym, tgt, pos = rest[k + 1 + 4 * j], rest[k + 2 + 4 * j], rest[k + 3 + 4 * j]
                if sym in ("@", "@i") and pos == "n":
                    hyps.append(int(tgt))
            if hyps:
                idx.hypernyms[off] = tuple(hyps)
    idx.source_sha256 = h.hexdigest()
    return idx
