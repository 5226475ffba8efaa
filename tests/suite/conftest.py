"""Fixtures shared by the suite's own tests."""
import json
import os
from pathlib import Path

import pytest


@pytest.fixture
def sanity_data(tmp_path, monkeypatch):
    """CNN/DM articles for the sanity paper's Lead-3 row: the vendored 250 under REPRO_DATA_DIR when present,
    else a few generated ones (a fresh machine must not download CNN/DM to run the fast tests)."""
    data = os.environ.get("REPRO_DATA_DIR")
    if data and (Path(data) / "cnn_dailymail" / "frank_cnndm_test_250.jsonl").is_file():
        return
    arts = tmp_path / "cnndm.jsonl"
    arts.write_text("".join(json.dumps({"id": str(i), "article": f"Story {i} begins. It goes on. It ends {i}.",
                                        "highlights": f"Story {i} begins."}) + "\n" for i in range(5)))
    monkeypatch.setenv("REPRO_CNNDM_JSONL", str(arts))
