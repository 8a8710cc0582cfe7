"""Start and stop a real ``bentoml serve`` of this repository for end-to-end tests and benchmarks.

Each server gets a free loopback port, its own ``BENTOML_HOME`` (so its Prometheus multiprocess
directory, which ``bentoml serve`` empties at start, is private to it) and its own process group,
so stopping it ends the whole tree (circus arbiter, LLM worker, auditor worker) and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_tiny_model(directory: Path, arch: str = "llama") -> Path:
    """A tiny random-init model + fast tokenizer (tests/tiny_models.py) saved as a HF directory."""
    sys.path.insert(0, str(REPO))
    from tests.tiny_models import build_model, build_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "config.json").exists():
        tok = build_tokenizer()
        model = build_model(arch, tok)
        model.save_pretrained(directory)
        tok.save_pretrained(directory)
    return directory


class BentoServer:
    """``bentoml serve`` from the repository root with ``AUDITOR_*`` overrides in ``env``."""

    def __init__(self, env: dict[str, str] | None = None, *, startup_timeout: float = 600.0,
                 workdir: Path | None = None, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="ia-serve-"))
        self.log_path = self.tmp / "server.log"
        self.env = dict(os.environ)
        for key in list(self.env):  # start from a clean slate of auditor settings
            if key.startswith("AUDITOR_"):
                del self.env[key]
        self.env.update(
            {
                "BENTOML_HOME": str(self.tmp / "bentoml"),
                "BENTOML_DO_NOT_TRACK": "true",
                "AUDITOR_STORE_URL": f"sqlite:///{self.tmp / 'audits.sqlite'}",
                "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1",
            }
        )
        self.env.update(env or {})
        self.startup_timeout = startup_timeout
        self.workdir = workdir or REPO
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self._tree: list = []  # psutil.Process of every worker seen (see descendants)

    def __enter__(self) -> BentoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() signals exactly this tree
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2.0).status_code == 200:
                    self.descendants()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"bentoml serve not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def descendants(self) -> list:
        """The server's worker processes (BentoML starts each in a process group of its own, so a
        signal to the arbiter's group does not reach them). Remembered, so that they can still be
        ended after the arbiter is gone."""
        import psutil

        if self.proc is not None and self.proc.poll() is None:
            try:
                found = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                found = []
            known = {p.pid for p in self._tree}
            self._tree += [p for p in found if p.pid not in known]
        return self._tree

    def kill_tree(self) -> None:
        """SIGKILL the arbiter and every worker at once: a crash of the whole process tree."""
        import psutil

        tree = self.descendants()
        if self.proc is not None and self.proc.poll() is None:
            tree = [psutil.Process(self.proc.pid), *tree]
        for proc in tree:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=30)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM the server's group (SIGKILL after 20 s), then end any worker left running, also
        after a test killed the arbiter alone: no test leaves a process behind."""
        import psutil

        if self.proc is not None and self.proc.poll() is None:
            self.descendants()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs([p for p in self._tree if p.is_running()], timeout=20)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ---- conveniences -------------------------------------------------------------------------
    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60.0), **kw)

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30.0).text

    def metric_value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def wait_for(self, predicate, timeout: float = 60.0, interval: float = 0.25):
        """Poll ``predicate()`` until it returns something truthy (bounded); return that value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s (last value {last!r}):\n{self.log_tail(3000)}")
