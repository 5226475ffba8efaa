"""Core sharing between side-by-side workers: the last one running gets every core."""
import subprocess
import sys

from suite.cores import CoreShare, usable_cores


def test_live_workers_split_the_cores_and_the_last_takes_them_all(tmp_path):
    share = CoreShare(tmp_path / "cores", cores=4)
    assert share.threads() == 4  # nobody registered yet
    with share.worker("a"):
        with CoreShare(tmp_path / "cores", cores=4).worker("b"):
            assert share.live_workers() == 2 and share.threads() == 2
        assert share.live_workers() == 1 and share.threads() == 4
    assert share.live_workers() == 0 and not list((tmp_path / "cores").iterdir())


def test_a_dead_workers_marker_does_not_count(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "cores"
    folder.mkdir()
    (folder / "crashed.worker").write_text(dead.stdout.strip())
    (folder / "half-written.worker").write_text("")
    share = CoreShare(folder, cores=2)
    with share.worker("me"):
        assert share.live_workers() == 1 and share.threads() == 2


def test_usable_cores_is_positive():
    assert usable_cores() >= 1
