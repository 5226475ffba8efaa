"""Fixtures for the sandbox tests: the isolation this machine has, and a host 'world' to attack."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from suite.sandbox import find_isolation


@pytest.fixture(scope="session")
def isolation():
    found, why = find_isolation()
    if found is None:
        pytest.skip(f"no OS isolation on this machine: {why}")
    return found


@dataclass
class World:
    """Host things a hostile program must not reach: files, a listening port, the environment, processes."""

    sentinel: Path
    sentinel_text: str
    port: int
    listener: socket.socket
    marker: str
    secret: str
    project: Path
    bystander: subprocess.Popen

    def substitute(self, code: str) -> str:
        for key, value in {"@SENTINEL@": str(self.sentinel), "@SENTINEL_DIR@": str(self.sentinel.parent),
                           "@PORT@": str(self.port), "@MARKER@": self.marker, "@SECRET@": self.secret,
                           "@PROJECT@": str(self.project), "@HOME@": str(Path.home()),
                           "@BYSTANDER@": str(self.bystander.pid)}.items():
            code = code.replace(key, value)
        return code

    def marked_processes(self) -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if self.marker in cmdline:
                    found.append(f"{entry.name}: {cmdline}")
        return found

    def pending_connection(self) -> bool:
        self.listener.settimeout(0.05)
        try:
            conn, _ = self.listener.accept()
        except (socket.timeout, BlockingIOError):
            return False
        conn.close()
        return True


@pytest.fixture
def world(tmp_path, monkeypatch):
    sentinel = tmp_path / "sentinels" / "sentinel.txt"
    sentinel.parent.mkdir()
    text = "untouched " + secrets.token_hex(8)
    sentinel.write_text(text)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    secret = "s3cret-" + secrets.token_hex(12)
    monkeypatch.setenv("REPRO_TEST_API_KEY", secret)
    marker = f"0.{secrets.randbelow(10 ** 9):09d}{secrets.randbelow(10 ** 9):09d}"
    bystander = subprocess.Popen(["sleep", "120"])
    w = World(sentinel, text, listener.getsockname()[1], listener, marker, secret,
              Path(__file__).resolve().parents[3], bystander)
    yield w
    listener.close()
    bystander.kill()
    bystander.wait()
    for line in w.marked_processes():  # never leave a leaked process behind, even when a test failed
        os.kill(int(line.split(":")[0]), 9)
