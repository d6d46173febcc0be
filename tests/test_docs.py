"""The documentation cannot drift from the code.

- docs/reference.md is what scripts/gen-cli-reference.py renders from the parser now;
- every command's --help has a description and examples, and the examples parse;
- an error names a doc page that exists (with its anchor);
- every relative link in README.md and docs/*.md resolves (file and anchor);
- the ```bash blocks of docs/guide.md run, in order, in an empty folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gat_hpc.cli import main as cli_main
from gat_hpc.cli.reference import command_tree, render, subcommands

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDE = DOCS / "guide.md"


# ---------------------------------------------------------------- the CLI reference
def test_cli_reference_is_current():
    committed = (DOCS / "reference.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/reference.md is out of date: run scripts/gen-cli-reference.py"


def test_reference_is_independent_of_the_terminal_width(monkeypatch):
    a = render()
    monkeypatch.setenv("COLUMNS", "40")
    assert render() == a
    monkeypatch.setenv("COLUMNS", "250")
    assert render() == a


def test_reference_has_a_section_for_every_command():
    text = render()
    for path, _, parser in command_tree():
        name = " ".join(("gat-hpc", *path))
        assert re.search(rf"^#+ {re.escape(name)}$", text, re.M), name
        for action in parser._actions:
            for flag in action.option_strings:
                if action.help != argparse.SUPPRESS and flag not in ("-h", "--help"):
                    assert flag in text, (name, flag)


def test_generator_script_checks_and_writes(tmp_path):
    out = tmp_path / "reference.md"
    script = str(ROOT / "scripts" / "gen-cli-reference.py")
    r = subprocess.run([sys.executable, script, "--check", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and "run scripts/gen-cli-reference.py" in r.stderr
    r = subprocess.run([sys.executable, script, "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8") == render()
    r = subprocess.run([sys.executable, script, "--check", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- --help of every command
def _example_commands(epilog):
    """The example command lines of an epilog (continuation lines joined), as argument lists."""
    lines, joined = epilog.splitlines(), []
    buf = ""
    for line in lines:
        if buf:
            buf += " " + line.strip()
        elif line.startswith("  ") and line.strip():
            buf = line.strip()
        else:
            continue
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        joined.append(buf)
        buf = ""
    out = []
    for line in joined:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # unbalanced quotes: prose, unless it is a command line
            assert not line.startswith("gat-hpc "), f"{line!r}: unbalanced quotes"
            continue
        if "gat-hpc" not in words:
            continue
        i = words.index("gat-hpc")
        prefix = words[:i]
        # only a command's own line: env assignments or an MPI launcher may come before it
        if all("=" in w for w in prefix) or (prefix and prefix[0] in ("mpirun", "mpiexec", "srun")):
            out.append((line, words[i + 1:]))
    return out


def _leaves():
    return [(path, help, p) for path, help, p in command_tree() if path and not subcommands(p)]


def test_every_command_has_a_description_and_examples_of_itself():
    tree = command_tree()
    assert len(_leaves()) >= 20
    for path, help, parser in tree:
        name = " ".join(("gat-hpc", *path))
        assert (parser.description or "").strip(), f"{name}: no description"
        if path:
            assert (help or "").strip(), f"{name}: no help line in `gat-hpc {' '.join(path[:-1])} --help`"
        if subcommands(parser) and path:
            continue
        assert parser.epilog and "gat-hpc " in parser.epilog, f"{name}: no examples in its epilog"
        examples = _example_commands(parser.epilog)
        own = [words for _, words in examples if tuple(words[:len(path)]) == path]
        assert own, f"{name}: its epilog has no example line of `{name} ...`"
        assert parser.formatter_class is not argparse.HelpFormatter, \
            f"{name}: use RawDescriptionHelpFormatter so the example lines keep their layout"


def test_every_option_has_help():
    for path, _, parser in command_tree():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            label = "/".join(action.option_strings) or action.dest
            assert (action.help or "").strip(), f"gat-hpc {' '.join(path)}: {label} has no help text"


def test_help_prints_for_every_command(capsys):
    for path, _, _ in command_tree():
        with pytest.raises(SystemExit) as e:
            cli_main.build_parser().parse_args([*path, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: gat-hpc"), path
        assert "%%" not in out and "%(" not in out, (path, "unexpanded % in the help text")


def test_example_lines_parse():
    """Every `gat-hpc ...` line in every epilog is accepted by the parser (nothing is run)."""
    seen = 0
    for path, _, parser in command_tree():
        for line, words in _example_commands(parser.epilog or ""):
            assert not re.search(r"\S {4,}-", line), f"{line!r}: a line continuation was swallowed (write \\\\)"
            try:
                args = cli_main.build_parser().parse_args(words)
            except SystemExit as exc:
                pytest.fail(f"example of `gat-hpc {' '.join(path)}` does not parse ({exc.code}): {line}")
            assert callable(getattr(args, "func", None)), line
            seen += 1
    assert seen >= 40


# ---------------------------------------------------------------- errors point to a doc page
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _strip_code(text):
    """The text with fenced code blocks blanked (line numbers kept) and inline code removed."""
    out, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            out.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)


def github_anchors(text):
    """The anchors GitHub gives the headings of a Markdown text (duplicates get -1, -2, ...)."""
    anchors, counts = set(), {}
    for line in _strip_code(text).splitlines():
        m = _HEADING.match(line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))  # a link's text
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    for m in re.finditer(r'<a\s+(?:name|id)="([^"]+)"', text):
        anchors.add(m.group(1))
    return anchors


def _target_exists(target, base=ROOT):
    path, _, anchor = target.partition("#")
    file = (base / path) if path else None
    if file is not None and not file.exists():
        return f"{path}: no such file"
    if anchor and (file is None or file.suffix == ".md"):
        anchors = github_anchors((file or base).read_text(encoding="utf-8"))
        if anchor not in anchors:
            return f"{target}: no heading with anchor #{anchor}"
    return None


def _hint_variants():
    """(path, args) pairs covering every branch of doc_page."""
    ns = argparse.Namespace
    for path, _, _ in command_tree():
        yield path, ns()
    yield ("pf",), ns(solver="petsc")
    yield ("pf",), ns(solver="newton", run_dir="runs/x", profiles="p.csv")
    yield ("nminus1",), ns(device="gpu")
    yield ("adequacy",), ns(device="gpu")
    yield ("runs", "resume"), ns(executor="slurm")
    yield ("report",), ns()


def test_error_hints_name_pages_that_exist():
    from gat_hpc.errors import ConvergenceError, InputError

    for path, args in _hint_variants():
        for exc in (InputError("x"), ConvergenceError("x")):
            page = cli_main.doc_page(path, args, exc)
            assert page.startswith("docs/"), (path, page)
            problem = _target_exists(page)
            assert problem is None, (path, vars(args), problem)


@pytest.mark.parametrize("argv,page,command", [
    (["pf", "ac", "nope.m", "--out", "o"], "docs/formats.md", "pf"),
    (["nminus1", "dc", "nope.m", "--run-dir", "r"], "docs/contingency.md", "nminus1"),
    (["adequacy", "nope.m", "--reliability", "r.csv", "--run-dir", "r"], "docs/adequacy.md", "adequacy"),
    (["opf", "dc", "nope.m", "--run-dir", "r"], "docs/opf.md", "opf"),
    (["runs", "describe", "--run-dir", "nowhere"], "docs/runs.md", "runs describe"),
    (["emit-sbatch", "trivial", "--run-dir", "r", "--time", "1:2:3:4"], "docs/cluster.md", "emit-sbatch trivial"),
])
def test_an_error_is_one_line_then_the_doc_page(tmp_path, monkeypatch, capsys, argv, page, command):
    monkeypatch.chdir(tmp_path)
    assert cli_main.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("gat-hpc: error: ")
    assert lines[1].startswith(f"gat-hpc: see {page}") and f"`gat-hpc {command} --help`" in lines[1], lines


# ---------------------------------------------------------------- links
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _markdown_files():
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_relative_links_resolve():
    problems, checked = [], 0
    for md in _markdown_files():
        text = _strip_code(md.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)  # inline code
        for m in _LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            checked += 1
            problem = _target_exists(target, md.parent) if target.split("#")[0] else None
            if not target.split("#")[0]:  # an anchor in the same file
                anchor = target[1:]
                if anchor not in github_anchors(md.read_text(encoding="utf-8")):
                    problem = f"{target}: no heading with anchor #{anchor}"
            if problem:
                problems.append(f"{md.relative_to(ROOT)}: {problem}")
    assert not problems, "\n".join(problems)
    assert checked >= 20


def test_readme_points_to_the_guide():
    assert "](docs/guide.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the guide's commands
def guide_blocks(text):
    """[(first line number, language, code)] of the fenced blocks of a Markdown text."""
    blocks, lang, start, buf = [], None, 0, []
    for n, line in enumerate(text.splitlines(), 1):
        if lang is None:
            m = re.match(r"^```(\S*)\s*$", line)
            if m:
                lang, start, buf = m.group(1), n + 1, []
        elif line.rstrip() == "```":
            blocks.append((start, lang, "\n".join(buf) + "\n"))
            lang = None
        else:
            buf.append(line)
    assert lang is None, f"a code block opened at line {start - 1} is not closed"
    return blocks


def test_guide_blocks_say_whether_they_run():
    """Every block is marked: bash (run by the test below) or console/text/toml/... (not run)."""
    blocks = guide_blocks(GUIDE.read_text(encoding="utf-8"))
    unmarked = [start - 1 for start, lang, _ in blocks if not lang]
    assert not unmarked, f"docs/guide.md: code blocks without a language at lines {unmarked}"
    assert sum(lang == "bash" for _, lang, _ in blocks) >= 15


def _has_report_command():
    return any(name == "report" for name, _, _ in subcommands(cli_main.build_parser()))


def test_guide_commands_run(tmp_path):
    blocks = [(start, code) for start, lang, code in guide_blocks(GUIDE.read_text(encoding="utf-8"))
              if lang == "bash"]
    if not _has_report_command():
        skipped = [start for start, code in blocks if re.search(r"\bgat-hpc report\b", code)]
        if skipped:
            print(f"docs/guide.md: `gat-hpc report` does not exist yet; not running the blocks at lines {skipped}")
        blocks = [(start, code) for start, code in blocks if start not in skipped]
    script = ["set -o pipefail"]
    for start, code in blocks:
        script.append(f"echo '>>> docs/guide.md line {start}' >&2")
        script.append(code)
    (tmp_path / "guide.sh").write_text("\n".join(script), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    bindir = os.path.dirname(sys.executable)
    assert os.path.exists(os.path.join(bindir, "gat-hpc")), f"gat-hpc is not installed beside {sys.executable}"
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("VIRTUAL_ENV", None)
    t0 = time.perf_counter()
    r = subprocess.run(["bash", "-e", str(tmp_path / "guide.sh")], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    took = time.perf_counter() - t0
    where = [line for line in r.stderr.splitlines() if line.startswith(">>> docs/guide.md")]
    assert r.returncode == 0, (f"the guide's block at {where[-1][4:] if where else '?'} failed "
                               f"(exit {r.returncode}):\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
    assert len(where) == len(blocks)
    print(f"ran {len(blocks)} bash blocks of docs/guide.md in {took:.1f} s")
