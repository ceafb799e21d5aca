"""Helpers shared by the benchmark programs: machine facts, timing, RESULTS.md sections."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results"
DEFAULT_CACHE = Path(os.environ.get("MRL_BENCH_CACHE", Path.home() / ".cache" / "mrl-bench"))


def log(*parts: Any) -> None:
    """Progress line on stderr with a UTC timestamp."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    print(f"[{stamp}]", *parts, file=sys.stderr, flush=True)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line(argv: list[str] | None, module: str) -> str:
    """The command that reproduces this run, as typed from the repository root."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m", module, *(shlex.quote(a) for a in args)])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, Any]:
    """Facts about the machine for the results header."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def versions(*modules: str) -> dict[str, str]:
    """`__version__` of each importable module, else 'not installed'."""
    import importlib

    out = {}
    for name in modules:
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception:  # noqa: BLE001 - any import failure is reported the same way
            out[name] = "not installed"
    try:
        from importlib.metadata import version

        out.setdefault("scann", version("scann"))
    except Exception:  # noqa: BLE001
        pass
    return out


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    if not seconds:
        return float("nan"), float("nan")
    a = np.asarray(seconds) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


class Timer:
    """`with Timer() as t: ...; t.seconds` (wall) and `t.cpu_seconds` (process CPU time)."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu


def dir_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under `path`."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def save_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")
    tmp.replace(path)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            if abs(v) >= 100:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_header(run: dict[str, Any], machine_note: str) -> list[str]:
    """The first lines of a run's RESULTS.md section: command, date and wall time, the machine
    (followed by `machine_note`, where `{load}` stands for the load average at the start) and
    the versions."""
    m = run["machine"]
    note = machine_note.format(load=m["load_avg_1m_at_start"])
    return [
        f"- Command: `{run['command']}`",
        f"- Date: {run['date']}; wall time {run['wall_s']:.0f} s",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM{note}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(run["versions"].items())),
    ]


def write_section(heading: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replaces (or appends) the `## heading` section of RESULTS.md, leaving the rest intact.

    A section runs from its `## ` heading line to the next `## ` heading or the end of the file.
    The file is created with a one-line title when missing.
    """
    text = path.read_text() if path.exists() else RESULTS_TITLE + "\n"
    block = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
