"""Timing helpers, machine description and worker processes shared by every benchmark stage.

Every figure in BENCHMARKS.md is a median over `repeats` timed runs (pooled over
rounds where a stage runs a worker more than once) that follow `warmup` untimed
runs (tracing, oneDNN primitive creation, allocator growth and caches all happen
in the warm-up), reported with the min and the max.

Frameworks are measured in worker processes (`python -m benchmarks.keras_worker`,
`benchmarks.torch_worker`, `benchmarks.distribute --worker`) that print one JSON line: TensorFlow's logical devices and
`TF_ENABLE_ONEDNN_OPTS` are fixed when TensorFlow initialises, and TensorFlow's
and PyTorch's thread pools must not compete for the same two cores.
"""
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata

import trainer
from trainer import cpu as trainer_cpu

# The marker in front of the one JSON line a worker prints; log lines from
# TensorFlow or absl can never be mistaken for it.
RESULT_PREFIX = "BENCHMARK_RESULT "


class WorkerError(RuntimeError):
    """A benchmark worker process failed; the message carries its command and stderr tail."""


def time_runs(fn, warmup, repeats):
    """Times `fn()` `repeats` times after `warmup` untimed calls.

    `fn` must block until its work is done (return a numpy value, call
    `.numpy()`, ...), otherwise asynchronous execution would be timed short.

    Args:
      fn: a callable without arguments.
      warmup: untimed calls first (>= 0).
      repeats: timed calls (>= 1).

    Returns:
      A list of `repeats` wall-clock durations in seconds.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError("time_runs expected warmup >= 0 and repeats >= 1. Received: warmup=%r, repeats=%r" % (warmup, repeats))
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


def summarize(values):
    """Median, min and max of measured values.

    Args:
      values: a non-empty sequence of numbers.

    Returns:
      {"median", "min", "max", "n", "values"}.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize expected at least one value. Received: []")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def rate_stats(items_per_run, durations):
    """Throughput statistics (items per second) of runs that each processed `items_per_run` items.

    Args:
      items_per_run: items (images, FLOPs, ...) processed in each timed run.
      durations: seconds of each timed run.

    Returns:
      `summarize` of items_per_run / duration for every run.
    """
    return summarize([items_per_run / d for d in durations])


def scale_stats(stats, factor):
    """`stats` with every figure multiplied by `factor` (for example images/s to GFLOP/s)."""
    return {
        "median": stats["median"] * factor,
        "min": stats["min"] * factor,
        "max": stats["max"] * factor,
        "n": stats["n"],
        "values": [v * factor for v in stats["values"]],
    }


def format_stats(stats, digits=1):
    """'median (min-max)' for a table cell, e.g. '18.4 (17.9-18.8)'."""
    fmt = "%%.%df" % digits
    return "%s (%s-%s)" % (fmt % stats["median"], fmt % stats["min"], fmt % stats["max"])


def markdown_table(headers, rows):
    """A GitHub markdown table.

    Args:
      headers: column titles.
      rows: sequences of cells, each as long as `headers`.

    Returns:
      The table as a string ending in a newline.
    """
    for row in rows:
        if len(row) != len(headers):
            raise ValueError("markdown_table expected rows of %d cells. Received: %r" % (len(headers), row))
    clean = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(clean(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cores():
    """The number of CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_seconds(children=False):
    """CPU time (user + system) of this process, all its threads; with `children`, plus that of
    its finished child processes (a Beam job's worker processes are waited for when it ends)."""
    usage = [resource.getrusage(resource.RUSAGE_SELF)]
    if children:
        usage.append(resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usage)


def faster_gemms(before, after):
    """Per GEMM, the faster of a worker's measurements before and after its steps: the
    ceiling is the best the machine gave in that worker, so "% of ceiling" errs low."""
    return {name: max(before[name], after[name], key=lambda stats: stats["median"]) for name in before}


def _package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model():
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    # Virtual machines often hide the exact part ("AMD EPYC"); family and model still tell the generation.
    return "%s (family %s, model %s)" % (fields["model name"], fields.get("cpu family", "?"), fields.get("model", "?"))


def _memory_gib():
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average():
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return None


def describe_machine():
    """What the figures were measured on, without importing TensorFlow or PyTorch.

    Returns:
      A dict: cpu, cores (logical CPUs this process may use), memory_gib,
      vector extensions relevant to float32 and bfloat16 GEMM, OS, Python,
      versions of tensorflow / keras / torch / numpy / apache-beam (None when not
      installed), TF_ENABLE_ONEDNN_OPTS as this process passes it on and as the
      environment set it before `trainer` gave its default (None: unset), load
      average, UTC time.
    """
    flags = trainer_cpu.cpu_flags() or set()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return {
        "cpu": _cpu_model(),
        "cores": cores(),
        "memory_gib": _memory_gib(),
        "vector_extensions": [f for f in wanted if f in flags],
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _package_version("tensorflow"),
        "keras": _package_version("keras"),
        "torch": _package_version("torch"),
        "numpy": _package_version("numpy"),
        "apache_beam": _package_version("apache-beam"),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get(trainer.ONEDNN_VARIABLE),
        "onednn_from_environment": trainer.ONEDNN_FROM_ENVIRONMENT,
        "load_average": load_average(),
        "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def tensorflow_onednn_default(timeout=300):
    """Whether TensorFlow left to itself (TF_ENABLE_ONEDNN_OPTS unset) runs its oneDNN kernels on this CPU.

    Asked of a child process, because a TensorFlow that has started cannot
    change its mind; its code is inline because importing `benchmarks` (for
    `keras_worker.onednn_enabled`) would set the variable. Returns True or
    False, or None when the child could not say (TensorFlow missing or failing
    to start).
    """
    env = {k: v for k, v in os.environ.items() if k != trainer.ONEDNN_VARIABLE}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    code = "from tensorflow.python.util import _pywrap_util_port as p; print('ONEDNN', bool(p.IsMklEnabled()))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    answers = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ONEDNN ")]
    return {"True": True, "False": False}.get(answers[-1]) if answers and proc.returncode == 0 else None


def describe_onednn(machine, tensorflow_default):
    """The machine table's oneDNN cell: the value the workers get, who chose it, and TensorFlow's own default here."""
    own = {True: "on", False: "off", None: "unknown"}[tensorflow_default]
    if machine["TF_ENABLE_ONEDNN_OPTS"] is None:
        chosen = "unset (TensorFlow started before `trainer` could give its default)"
    elif machine["onednn_from_environment"] is None:
        chosen = "%s (the project's default, trainer/__init__.py)" % machine["TF_ENABLE_ONEDNN_OPTS"]
    else:
        chosen = "%s (set in the environment)" % machine["onednn_from_environment"]
    return "%s; TensorFlow's own default on this CPU: %s" % (chosen, own)


def emit_result(result):
    """Prints a worker's result as the one marked JSON line its parent reads."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_worker(module, args, env=None, timeout=3600):
    """Runs `python -m module *args` and returns the JSON result it emitted.

    Args:
      module: dotted module name with a worker entry point (e.g. 'benchmarks.keras_worker').
      args: its command-line arguments.
      env: extra environment variables for the child (merged over this process's).
      timeout: seconds before the child is killed.

    Returns:
      The dict the worker passed to `emit_result`.

    Raises:
      WorkerError: the child failed, timed out or printed no result.
    """
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env.update(env or {})
    command = [sys.executable, "-m", module, *[str(a) for a in args]]
    try:
        proc = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise WorkerError("python %s timed out after %d s" % (" ".join(command[1:]), timeout)) from err
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX) and proc.returncode == 0:
            return json.loads(line[len(RESULT_PREFIX):])
    raise WorkerError("python %s exited with code %d: %s" % (" ".join(command[1:]), proc.returncode,
                                                            error_line(proc.stderr or proc.stdout)))  # fmt: skip


def error_line(output):
    """The most telling line of a failed process's output: its last 'SomethingError: ...' line, else its last line."""
    # Installed-package paths name the machine, not the problem: keep them relative.
    text = re.sub(r"/\S*?/site-packages/", "", output or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception)\b", line):
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def reproduce_command(argv):
    """The shell command a reader runs to reproduce a figure (module form, from the repository root)."""
    return "python -m benchmarks " + " ".join(argv)
