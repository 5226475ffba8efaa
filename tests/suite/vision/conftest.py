import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # tests.fixtures


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared data root, for the tests that check the adapters on real images (skipped without it)."""
    d = os.environ.get("REPRO_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("REPRO_DATA_DIR is not set: the real-data checks read imagenet/ and coco/ under it")
    return Path(d)

