"""The docs cannot drift from the code: the README is a front page linking every page, links resolve,
nothing points outside the repository, the reference page is what the code generates, and every
command in a `sh` block exists as written (train-kit and serve-kit lines parse against the real
commands, make targets and scripts exist); blocks marked `sh run` are run."""

from __future__ import annotations

import os
import re
import runpy
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from serving.cli import app as serve_kit
from training.cli import app as train_kit

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^ *```(\w*)(?: (\w+))?\n(.*?)^ *```$", re.S | re.M)


def test_the_readme_is_a_front_page_that_links_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert [page.name for page in PAGES if f"(docs/{page.name})" not in text] == []


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_links_resolve_and_stay_inside_the_repository(page: Path) -> None:
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]*)[^)]*\)", text):
        if target:
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    urls = re.findall(r"https?://[^\s)`'\"]+", text)
    outside = [url for url in urls if not re.match(r"https?://(127\.|localhost)", url)]
    assert outside == [], f"{page.name} points outside the repository"


def test_the_reference_page_is_what_the_code_generates() -> None:
    generate = runpy.run_path(str(ROOT / "docs" / "write_reference.py"))["generate"]
    assert (ROOT / "docs" / "reference.md").read_text() == generate(), "run python docs/write_reference.py"


def test_every_flag_and_setting_says_what_it_means() -> None:
    lines = (ROOT / "docs" / "reference.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) > 100
    assert [row for row in rows if row.rstrip().endswith("|  |")] == []


def commands(run: bool = False) -> Iterator[tuple[str, str]]:
    """(where, command) for each command of each `sh` block (`sh run` blocks only, if `run`):
    continuation lines joined, comments dropped."""
    for page in [README, *PAGES]:
        for match in FENCE.finditer(page.read_text()):
            language, mark, body = match.groups()
            if language != "sh" or (run and mark != "run"):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                command = line.split(" #")[0].strip()
                if command and not command.startswith("#"):
                    yield page.name, command


def test_the_docs_have_commands_to_check() -> None:
    assert len(list(commands())) > 40 and list(commands(run=True))


def test_every_command_in_the_docs_exists_as_written() -> None:
    makefile = (ROOT / "Makefile").read_text()
    clis = {"train-kit": typer.main.get_command(train_kit), "serve-kit": typer.main.get_command(serve_kit)}
    problems = []
    for where, command in commands():
        words = shlex.split(command)
        while "=" in words[0]:  # VARIABLE=value before the command
            words = words[1:]
        if words[0] == "torchrun":  # torchrun [its options] -m training <train-kit arguments>
            words = ["train-kit", *words[words.index("training") + 1 :]]
        try:
            if words[0] in clis:
                _parse(clis[words[0]], words)
            elif words[0] == "make":
                missing = [t for t in words[1:] if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
                assert not missing, f"no make target {missing}"
            elif words[0] in ("python", "bash") and words[1].endswith((".py", ".sh")):
                assert (ROOT / words[1]).is_file(), f"no file {words[1]}"
        except Exception as err:
            problems.append(f"{where}: {command}\n    {type(err).__name__}: {err}")
    assert not problems, "\n".join(problems)


def _parse(group: object, words: list[str]) -> None:
    """Resolve the subcommand and parse its arguments as click would, without running it."""
    command, args = group, words[1:]
    while hasattr(command, "commands"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r}"
        command = command.commands[name]
    if "--help" not in args:
        command.make_context(words[0], list(args))  # type: ignore[attr-defined]


def test_the_commands_marked_run_succeed(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for where, command in commands(run=True):
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: {command}\n{done.stderr[-2000:]}"
