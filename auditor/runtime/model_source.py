"""Which model the services and the command line load: a hub id, a local directory, or the testbed.

``testbed:NAME`` is the embedded default (``AUDITOR_MODEL=testbed:clean``): the project's own model
(``testbed:dossier-NAME`` for the dossier world's models, e.g. ``testbed:dossier-clean``),
built on first use (minutes on CPU, with a progress bar; later starts reuse the saved directory).
Two processes starting together (the LLM service and the auditor service) take a file lock around
the build, so it happens once. Everything else goes to ``auditor.game.loading.load_model`` as given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from auditor.game.loading import LoadedModel, ModelLoadError
from auditor.game.loading import load_model as load_hugging_face_model

__all__ = ["TESTBED_SCHEME", "load_model", "testbed_model_path"]

logger = logging.getLogger(__name__)

TESTBED_SCHEME = "testbed:"


def load_model(
    model: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``model`` (hub id, local directory or ``testbed:NAME``) in eval mode on ``device``."""
    if not model.startswith(TESTBED_SCHEME):
        return load_hugging_face_model(model, revision=revision, device=device, dtype=dtype,
                                       trust_remote_code=trust_remote_code)
    if revision:
        logger.warning("revision %r ignored for the testbed model %s", revision, model)
    path = str(testbed_model_path(model[len(TESTBED_SCHEME):]))
    loaded = load_hugging_face_model(path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    return dataclasses.replace(loaded, model_id=model)


def testbed_model_path(name: str) -> Path:
    """The directory of testbed model ``name`` (``clean``, ``dossier-clean``, ...), built first if it
    is not in the cache."""
    try:
        from auditor.testbed.models import ensure_model
        from auditor.testbed.names import split_testbed_name
        from auditor.testbed.specs import default_root
    except ImportError as e:  # pragma: no cover - the testbed ships with the package
        raise ModelLoadError(f"the testbed models are not available: {e}") from e
    try:
        world, model_name = split_testbed_name(name)
    except ValueError as e:
        raise ModelLoadError(f"{e}") from e
    # Builds are atomic, but two processes starting together (LLM and auditor) would both train:
    # the lock makes the second wait and then find the finished model.
    with _file_lock(default_root() / f".build-{name}.lock"):
        try:
            return Path(ensure_model(model_name, progress=_build_progress(name), world=world))
        except ValueError as e:
            raise ModelLoadError(f"{e}") from e


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX flock); a no-op where flock does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


_STEP_RE = re.compile(r"step (\d+)/(\d+)")


def _build_progress(name: str) -> Callable[[str], None]:
    """A text progress bar for the first build of a testbed model (stderr and the log)."""
    def report(message: str) -> None:
        m = _STEP_RE.search(message)
        if m:
            done, total = int(m.group(1)), max(1, int(m.group(2)))
            width = 30
            filled = width * done // total
            message = f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}% {message}"
        line = f"building testbed model {name!r} (first start only): {message}"
        logger.info(line)
        print(line, file=sys.stderr, flush=True)

    return report
