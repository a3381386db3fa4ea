"""docs/api.md agrees with the code: every public function has a section whose heading
is its real signature (names, kinds, defaults), and docs/cli.md lists every option of
every command, and no option that does not exist."""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
from linkstrategy import _cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
SIGNATURE = re.compile(r"`([a-z_]+)\((.*?)\)(?: -> [^`]+)?`")


def _documented() -> dict[str, str]:
    """name -> documented parameters, from every signature in a ``## `` heading."""
    out: dict[str, str] = {}
    for line in (DOCS / "api.md").read_text().splitlines():
        if line.startswith("## "):
            out.update((m[1], m[2]) for m in SIGNATURE.finditer(line))
    return out


def _shape(name: str, args: str) -> list[tuple[str, str, str | None]]:
    """(name, kind, default as source) of each parameter of ``def name(args)``."""
    fn = ast.parse(f"def {name}({args}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    out: list[tuple[str, str, str | None]] = []
    pos = [*a.posonlyargs, *a.args]
    pos_defaults: list[ast.expr | None] = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    for p, d in zip(pos, pos_defaults, strict=True):
        out.append((p.arg, "positional", None if d is None else ast.unparse(d)))
    if a.vararg:
        out.append((a.vararg.arg, "var", None))
    for p, kd in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((p.arg, "keyword", None if kd is None else ast.unparse(kd)))
    return out


def _real(fn: Any) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for p in inspect.signature(fn).parameters.values():
        kind = {
            p.POSITIONAL_ONLY: "positional",
            p.POSITIONAL_OR_KEYWORD: "positional",
            p.VAR_POSITIONAL: "var",
            p.KEYWORD_ONLY: "keyword",
        }[p.kind]
        default = None if p.default is p.empty else ast.unparse(ast.parse(repr(p.default)).body[0])
        out.append((p.name, kind, default))
    return out


PUBLIC_FUNCTIONS = sorted(
    n for n in linkstrategy.__all__ if inspect.isfunction(getattr(linkstrategy, n))
)


def test_the_headings_are_found() -> None:
    assert {"place", "remove", "probe", "plan", "upgrade"} <= set(_documented())


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_api_heading_is_the_real_signature(name: str) -> None:
    documented = _documented()
    assert name in documented, f"docs/api.md has no '## `{name}(...)`' section"
    assert _shape(name, documented[name]) == _real(getattr(linkstrategy, name))


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


COMMON = {"--json", "--quiet", "--verbose"}  # documented once, for every command


def _cli_sections() -> list[tuple[set[str], str]]:
    """(the commands a ``## `linkstrategy ...``` heading names, its text) of docs/cli.md."""
    text = (DOCS / "cli.md").read_text()
    out: list[tuple[set[str], str]] = []
    for block in re.split(r"^(?=## )", text, flags=re.M):
        heading = block.split("\n", 1)[0]
        commands = set(re.findall(r"`linkstrategy ([a-z]+)", heading))
        if heading.startswith("## ") and commands:
            out.append((commands, block))
    return out


def _options(command: str) -> set[str]:
    sub = _subparsers()[command]
    return {s for a in sub._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def test_cli_doc_has_a_section_per_command() -> None:
    documented = set().union(*(c for c, _ in _cli_sections()))
    assert documented == set(_subparsers())


def test_common_options_are_common_and_documented() -> None:
    intro = (DOCS / "cli.md").read_text().split("\n## ", 1)[0]
    for command in _subparsers():
        assert _options(command) >= COMMON, command
    assert set(re.findall(r"(--[a-z][a-z-]*)", intro)) >= COMMON


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_cli_doc_lists_exactly_the_options(command: str) -> None:
    [(commands, section)] = [(c, b) for c, b in _cli_sections() if command in c]
    same = re.search(r"Same options as `([a-z]+)` except ([^.;]*)", section)
    if same:  # "Same options as `place` except `--dry-run` and `--no-live`"
        excepted = set(re.findall(r"(--[a-z][a-z-]*)", same[2]))
        assert _options(same[1]) - excepted == _options(command)
        return
    shown = set(re.findall(r"(--[a-z][a-z-]*)", section))
    missing = _options(command) - COMMON - shown
    assert missing == set(), f"options of {command} missing from its docs/cli.md section"
    real = set().union(*(_options(c) for c in commands)) | {"--version"}
    assert shown - real == set(), f"docs/cli.md's section names options {commands} do not have"
