"""The repository stands alone: a clone with nothing beside it runs its tests and its default.

No file names an absolute path of some machine (a home folder, a build or session folder), and
nothing reads the reference folder that sits beside the project on development machines; what
the tests need is copied into `tests/fixtures/` with its source.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIPPED_DIRS |= {".hypothesis", "build", "state", "mutants"}
BINARY_SUFFIXES = {".feather", ".png", ".pyc", ".db", ".sqlite"}

# Built from parts so that this file does not match itself.
MACHINE_PATHS = re.compile(
    "|".join(
        [
            "/" + "work/",  # this workplace's checkouts
            "/" + r"root/\.",  # a root home's dot folders (pyenv, cache)
            "/" + r"home/[a-z_][a-z0-9_-]*/",
            "/" + "Users/",
            "/" + r"tmp/pytest-of-",
        ]
    )
)
OUTSIDE_READS = re.compile(
    "|".join(
        [
            r"\.\./" + "shared",
            r"parent\s*/\s*[\"']" + "shared",
            r"parents\[\d\]\s*/\s*[\"']" + "shared",
        ]
    )
)


def repository_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in BINARY_SUFFIXES:
            files.append(path)
    return files


def offending_lines(pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in repository_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    return found


def test_no_file_names_an_absolute_path_of_some_machine() -> None:
    assert len(repository_files()) > 50  # the walk found the repository
    assert offending_lines(MACHINE_PATHS) == []


def test_nothing_reads_the_reference_folder_beside_the_project() -> None:
    assert offending_lines(OUTSIDE_READS) == []


def test_the_patterns_catch_what_they_guard_against() -> None:
    assert MACHINE_PATHS.search("data = Path('" + "/" + "work/main/data')")
    assert MACHINE_PATHS.search("python at " + "/" + "root/.pyenv/versions/3.11.7")
    assert not MACHINE_PATHS.search("config at /etc/tradectl/config.toml, venv in /opt/tradectl")
    assert OUTSIDE_READS.search("REPO.parent / " + '"' + "shared" + '"' + ' / "data"')
    assert OUTSIDE_READS.search("see .." + "/" + "shared/data")
    assert not OUTSIDE_READS.search("a budget shared by all bots")
