"""How a run becomes a verdict, what happens without isolation, and the non-root way of isolating."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from suite import sandbox
from suite.sandbox import Limits, Program, SandboxUnavailable, _verdict, find_isolation, run_python

NONCE = "ab" * 16


@pytest.mark.parametrize("report, passed, reason", [
    (f"{NONCE}\nexit 0\nok\n", True, "passed"),
    (f"{NONCE}\nexit 0\nno\n", False, "exit 0 without a pass report"),
    (f"{NONCE}\nexit 3\nno\n", False, "exit 3 without a pass report"),
    (f"{NONCE}\nexit 1\nno\nAssertionError (<test> line 2)", False, "exit 1: AssertionError (<test> line 2)"),
    (f"{NONCE}\nsignal 11\nno\n", False, "signal SIGSEGV"),
    (f"{NONCE}\nsignal 9\nok\n", False, "signal SIGKILL"),
    (f"{'cd' * 16}\nexit 0\nok\n", False, "no report from the sandbox supervisor (exit 0)"),
    ("", False, "no report from the sandbox supervisor (exit 0)"),
])
def test_only_the_supervisors_report_with_the_nonce_passes(report, passed, reason):
    assert _verdict(report.encode(), NONCE, 0, "") == (passed, reason)


def test_missing_bwrap_is_reported_with_its_reason():
    found, why = find_isolation("/nonexistent/bwrap")
    assert found is None and "/nonexistent/bwrap is not executable" in why


def test_refuses_without_isolation_unless_opted_in(monkeypatch):
    monkeypatch.setattr(sandbox, "find_isolation", lambda bwrap=None: (None, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.ALLOW_UNSANDBOXED, raising=False)
    with pytest.raises(SandboxUnavailable, match=r"bwrap\) is not installed.*REPRO_ALLOW_UNSANDBOXED=1"):
        run_python("pass")


def test_opt_in_runs_bare_with_the_same_verdict_rules(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "find_isolation", lambda bwrap=None: (None, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setenv(sandbox.ALLOW_UNSANDBOXED, "1")
    with pytest.warns(UserWarning, match="WITHOUT isolation"):
        ok = run_python("import os\nassert os.environ['HOME'] != os.path.expanduser('~root')")
    assert ok.passed and ok.isolation == "none"
    with pytest.warns(UserWarning):
        assert run_python("import os\nos._exit(0)").reason == "exit 0 without a pass report"
    with pytest.warns(UserWarning):
        assert run_python("while True: pass", timeout_s=1).reason == "timeout after 1s"


def test_stderr_is_capped_and_the_rest_dropped(isolation):
    result = run_python("import sys\nsys.stderr.write('e' * (4 << 20))", limits=Limits(output_bytes=1000),
                        isolation=isolation)
    assert result.passed and result.stderr == "e" * 1000


def test_program_without_a_test_passes_by_running_to_its_end(isolation):
    assert run_python(Program("x = 1"), isolation=isolation).passed
    assert run_python(Program("raise KeyError('k')"), isolation=isolation).reason == \
        "exit 1: KeyError: 'k' (<program> line 1)"


def test_missing_entry_point_and_check_fail_with_their_reason(isolation):
    no_entry = Program("def other():\n    return 1\n", test="def check(c):\n    pass\n", entry_point="add")
    assert run_python(no_entry, isolation=isolation).reason.startswith("exit 1: NameError")
    no_check = Program("def add():\n    return 1\n", test="x = 1\n", entry_point="add")
    assert run_python(no_check, isolation=isolation).reason.startswith("exit 1: KeyError: 'check'")


def _plain_python() -> str | None:
    """An interpreter another uid can run (the project's may live in root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info >= (3, 9))"],
                                     capture_output=True, text=True).stdout.strip()
            if version == "True":
                return candidate
    return None


def _world_readable_copy(repo: Path, dest: Path) -> Path:
    """The probe and the suite where uid 65534 can read them: a clone may sit in a 0700 folder (mktemp -d)."""
    shutil.copytree(repo / "suite", dest / "suite", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(repo / "tests" / "suite" / "sandbox" / "unprivileged_probe.py", dest)
    for p in [dest, *dest.parents]:
        if p == Path(tempfile.gettempdir()) or p == p.parent:
            break
        p.chmod(p.stat().st_mode | 0o755)
    for p in dest.rglob("*"):
        p.chmod(p.stat().st_mode | (0o755 if p.is_dir() else 0o644))
    return dest


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None or _plain_python() is None,
                    reason="needs root (to become an ordinary user), bwrap, and a system python3 >= 3.9")
def test_an_ordinary_user_gets_a_user_namespace_sandbox(tmp_path_factory):
    """The non-root path: bwrap creates a user namespace; RLIMIT_NPROC counts only the sandbox's processes."""
    root = _world_readable_copy(Path(__file__).resolve().parents[3], tmp_path_factory.mktemp("probe"))
    proc = subprocess.run([_plain_python(), str(root / "unprivileged_probe.py")],
                          capture_output=True, text=True, timeout=60, user=65534, group=65534, extra_groups=[],
                          cwd="/", env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    if proc.returncode == 3:
        pytest.skip(f"an ordinary user cannot create the sandbox here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["privileged"] is False and out["pass"] == "passed"
    assert out["exit0"] == "exit 0 without a pass report"
    assert out["forks"].startswith("exit 1: BlockingIOError"), out["forks"]
    assert out["writes"] == [" OSError"] * 3 and out["tmp"] == "passed", out


def test_a_candidates_main_block_stays_off_as_in_the_official_harness(isolation):
    source = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    input()\n"
    program = Program(source, test="def check(candidate):\n    assert candidate(1, 2) == 3\n", entry_point="add")
    assert run_python(program, isolation=isolation).passed
    assert run_python("assert __name__ == '__main__'", isolation=isolation).passed
