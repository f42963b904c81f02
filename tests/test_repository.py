"""House rules of the repository, checked: numbers where they are measured, no reference a
reader cannot open, modules and functions of a readable size, no import cycle."""
import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "preprocessing", "model", "trainer", "experiments", "benchmarks", "cloud")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# The straight-line model definition reads best as one function (layer after layer).
LONG_FUNCTIONS_ALLOWED = {("model/alexnet.py", "build_alexnet")}

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# A measured timing, throughput or speed ratio, or a run date.
MEASUREMENT = re.compile(
    r"\b\d+(?:[.,]\d+)?\s?(?:ms|us|µs)\b"
    r"|\b\d+[.,]\d+\s?s\b(?!\w)"
    r"|\b\d+(?:[.,]\d+)?\s?(?:images/s|img/s|GFLOP/s|TFLOP/s)"
    r"|\b\d+(?:[.,]\d+)?\s?x (?:faster|slower)\b"
    r"|\b\d{1,2} (?:%s) 20\d\d\b" % _MONTHS
    + r"|\b20\d\d-\d\d-\d\d\b"
)
# Pointers a reader of the repository cannot follow.
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared|\bissue \d+\b|/work/|/root/")


def _tracked(*patterns):
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.splitlines() if (REPO / line).is_file()]


def _package_modules():
    return [p for p in _tracked("*.py") if p.relative_to(REPO).parts[0] in PACKAGES]


# A target is not a measurement: "at least 1,200 images/s per core", ">= 1,200 images/s".
TARGET = re.compile(r"(?:>=|at least)\s*$")


def measurements(text):
    """[(line number, match)] of measured figures and run dates in `text` (targets excepted)."""
    return [
        (n, m.group(0))
        for n, line in enumerate(text.splitlines(), 1)
        for m in MEASUREMENT.finditer(line)
        if not TARGET.search(line[: m.start()])
    ]


@pytest.mark.parametrize("text", ["took 71 ms a step", "20.4 images/s", "run on 5 December 2026", "1.5x slower",
                                  "at 1.78 s against", "on 2026-12-05", "186 GFLOP/s"])
def test_the_measurement_check_flags_figures(text):
    assert measurements(text), text


@pytest.mark.parametrize("text", ["timeout=600", "227x227 crops", "batch 128", "lr 0.01", "exit code 143",
                                  "seconds=10.0", "top-1 57.1%", "2x2 grid", "version 2.21",
                                  "the target: at least 1,200 images/s per core", "input >= 1,200 images/s"])
def test_the_measurement_check_leaves_constants_alone(text):
    assert not measurements(text), text


def test_no_measured_figure_in_code_or_the_readme():
    found = []
    for path in _package_modules() + [REPO / "README.md"]:
        found += ["%s:%d: %r" % (path.relative_to(REPO), n, m) for n, m in measurements(path.read_text(encoding="utf-8"))]
    assert not found, "measured figures belong in BENCHMARKS.md or a dated note under docs/:\n" + "\n".join(found)


def test_no_reference_outside_the_repository():
    found = []
    for path in _tracked("*.py", "*.md", "*.yaml", "*.toml", "Makefile", "Dockerfile", ".ci/run"):
        if path.relative_to(REPO).parts[0] == "tests" or path.name == "BENCHMARKS.md":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in OUTSIDE.finditer(line):
                found.append("%s:%d: %r" % (path.relative_to(REPO), n, m.group(0)))
    assert not found, "references a reader cannot open:\n" + "\n".join(found)


def test_modules_and_functions_are_of_a_readable_size():
    found = []
    for path in _package_modules():
        rel = str(path.relative_to(REPO))
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > MAX_MODULE_LINES:
            found.append("%s: %d lines (at most %d)" % (rel, source.count("\n"), MAX_MODULE_LINES))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS_ALLOWED:
                    found.append("%s:%d: %s is %d lines (at most %d)" % (rel, node.lineno, node.name, length,
                                                                         MAX_FUNCTION_LINES))
    assert not found, "\n".join(found)


def _module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, modules):
    """The project modules `path` imports at module level (not inside functions)."""
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ["%s.%s" % (node.module, alias.name) for alias in node.names]
        out |= {name for name in names if name in modules}
    return out


def import_graph():
    modules = {_module_name(p): p for p in _package_modules()}
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_packages():
    assert find_cycle(import_graph()) is None, find_cycle(import_graph())


def test_the_trainer_takes_only_the_record_schema_from_preprocessing():
    graph = import_graph()
    allowed = {"preprocessing", "preprocessing.schema", "preprocessing.fields"}
    found = sorted(
        "%s imports %s" % (name, dep)
        for name, deps in graph.items() if name.startswith("trainer")
        for dep in deps if dep.startswith("preprocessing") and dep not in allowed
    )
    assert not found, found
