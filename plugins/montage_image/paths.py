"""The path sandbox: every input and the output must resolve inside an allowed root.

Paths are resolved with `os.path.realpath`, so `..` segments and symlinks are
followed before the check: a symlink inside a root that points outside it is
refused like any other escape. Relative paths are taken relative to the first
allowed root (a worker's working directory means nothing to a producer).

With no allowed roots the sandbox allows nothing: a montage worker can read and
write files, so the operator must say where (`dtq worker --allow-path DIR`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from dtq.errors import PermanentJobError

NO_ROOTS = (
    "montage_image: no allowed paths are configured, so the plugin may not read or write "
    "any file; start the supervisor with --allow-path DIR (PluginConfig.allowed_paths)"
)


class Sandbox:
    """Resolves job paths and refuses any that land outside the allowed roots."""

    def __init__(self, roots: Iterable[Path | str]) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)

    def _resolve(self, field: str, raw: str) -> Path:
        if not self.roots:
            raise PermanentJobError(NO_ROOTS)
        if "\x00" in raw:
            raise PermanentJobError(f"montage_image: {field}: path contains a NUL byte")
        real = Path(os.path.realpath(os.path.join(self.roots[0], raw)))
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(r) for r in self.roots)
            raise PermanentJobError(
                f"montage_image: {field}: {raw!r} resolves to {real}, outside the allowed "
                f"paths ({allowed})"
            )
        return real

    def input_file(self, raw: str) -> Path:
        """The real path of one input; existence is checked later, per file."""
        return self._resolve("inputs", raw)

    def input_dir(self, raw: str) -> Path:
        """The real path of ``input_dir``, which must be an existing directory."""
        real = self._resolve("input_dir", raw)
        if not real.is_dir():
            raise PermanentJobError(f"montage_image: input_dir: {raw!r} is not a directory")
        return real

    def output_file(self, raw: str) -> Path:
        """The real path of the output; its directory must already exist."""
        real = self._resolve("output", raw)
        if not real.parent.is_dir():
            raise PermanentJobError(
                f"montage_image: output: directory {real.parent} does not exist"
            )
        if real.exists() and not real.is_file():
            raise PermanentJobError(f"montage_image: output: {real} exists and is not a file")
        return real

    def glob(self, directory: Path, pattern: str, limit: int) -> list[tuple[str, Path]]:
        """Regular files under ``directory`` matching ``pattern``, sorted, at most ``limit``."""
        found: list[tuple[str, Path]] = []
        for path in sorted(directory.glob(pattern)):
            if not path.is_file():
                continue
            if len(found) >= limit:
                raise PermanentJobError(
                    f"montage_image: input_dir: more than max_inputs={limit} files match "
                    f"{pattern!r}"
                )
            found.append((str(path), self._resolve("input_dir", str(path))))
        return found


def open_regular(real: Path) -> int:
    """Open ``real`` read-only without following a last-moment symlink; refuse non-files.

    A FIFO or a device would block or never end, so only regular files are read.
    """
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {real}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
