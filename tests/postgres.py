"""A PostgreSQL server for the store tests: the one named by ``AUDITOR_TEST_POSTGRES_URL`` (``.ci/run``
exports it, starting a throwaway cluster when none answers), else ``postgresql://postgres@127.0.0.1:5432/test``.

Each test gets its own schema (``options=-csearch_path=...`` in the URL, so the store, its advisory
lock key and every raw SQL statement stay inside it) and drops it afterwards. Like
:func:`tests.tools.require_program`: no server answers -> skip locally, fail under ``CI`` (CI must
run these tests).

:func:`throwaway_cluster` starts a cluster of a test's own, for what cannot be done to the shared
server: stopping and restarting it mid-stream."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from tests.tools import unavailable

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The base URL of a server that answers; skip (locally) or fail (CI) when none does."""
    url = os.environ.get("AUDITOR_TEST_POSTGRES_URL") or DEFAULT_URL
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means: no server for these tests
        unavailable(f"no PostgreSQL server answers at {url} ({type(error).__name__}); set AUDITOR_TEST_POSTGRES_URL "
                    "or run bash .ci/run, which starts one")
    return url


def with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A store URL inside a new, empty schema; the schema is dropped on exit."""
    import psycopg

    base = server_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class RawPostgres:
    """sqlite3-shaped raw access to a store's tables (``?`` placeholders), for tampering in tests."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), params)

    def close(self) -> None:
        self._conn.close()


class CuttableProxy:
    """A TCP proxy in front of the server that a test can cut (every connection reset, new ones
    refused) and restore: a network outage of the shared server without touching it."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # refused while cut
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):  # as libpq does: no Nagle delay on small protocol messages
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        import socket

        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def url(self, store_url: str) -> str:
        """``store_url`` with its host and port replaced by the proxy's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(store_url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))


class ThrowawayCluster:
    """A PostgreSQL cluster of the test's own (``initdb`` in a temporary directory, on a free
    loopback port) that a test may stop, restart and kill: what cannot be done to the shared server.

    As ``.ci/run`` does: the newest ``/usr/lib/postgresql/*/bin`` (or ``initdb`` on PATH); as the
    unprivileged user ``postgres`` through ``runuser`` when running as root (initdb refuses root).
    Trust authentication, user ``postgres``, its socket in the cluster's directory."""

    def __init__(self, bindir: str) -> None:
        import pwd
        import shutil
        import subprocess
        import tempfile

        self.bindir = bindir
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="ia-pg-")  # under /tmp: pytest's tmp_path is closed to other users
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                unavailable("running as root and there is no user 'postgres' to run initdb as")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        result = subprocess.run([*self._as, os.path.join(bindir, "initdb"), "-D", self.data, "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"], capture_output=True, text=True,
                                timeout=120)
        if result.returncode:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")
        self.start()

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        import subprocess

        result = subprocess.run([*self._as, os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log,
                                 "-w", "-t", str(int(timeout)), *args], capture_output=True, text=True,
                                timeout=timeout + 10)
        if result.returncode:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({result.returncode}): {result.stderr[-1000:]}\n"
                               f"{self.log_tail()}")

    def start(self) -> None:
        self._pg_ctl("-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: clients disconnected, a clean shutdown; ``immediate``: no checkpoint (a crash,
        recovered from the WAL at the next start)."""
        self._pg_ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        import shutil

        try:
            self.stop("immediate")
        except Exception:  # noqa: BLE001 - already stopped (or never started): nothing to stop
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> str:
    """The directory of ``initdb`` and ``pg_ctl`` (the newest Debian cluster version, else PATH);
    skip locally, fail under ``CI``, when there is none."""
    import glob
    import shutil

    def version(path: str) -> int:  # /usr/lib/postgresql/15/bin/initdb -> 15
        major = path.split("/")[-3]
        return int(major) if major.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    initdb = candidates[-1] if candidates else shutil.which("initdb")
    if not initdb or not shutil.which("pg_ctl", path=os.path.dirname(initdb)):
        unavailable("initdb/pg_ctl not found: install PostgreSQL's server (apt-get install postgresql)")
    return os.path.dirname(initdb or "")


@contextmanager
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """A started :class:`ThrowawayCluster`; stopped and deleted on exit."""
    cluster = ThrowawayCluster(postgres_bindir())
    try:
        yield cluster
    finally:
        cluster.close()
