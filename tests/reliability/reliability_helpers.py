"""Helpers of the reliability tests: running pytest on vlmdiag's diagnostics (in this process or
in a subprocess), damaging checkpoint copies, and snapshots of folders."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from pytest_runs import run_pytest

ROOT = Path(__file__).resolve().parents[2]
DIAGNOSTICS = ROOT / "diagnostics"
UPDATES = DIAGNOSTICS / "test_updates.py"  # the weight claims: runnable on weight-only folders
ATTENTION = DIAGNOSTICS / "test_attention.py"  # an inference claim: needs a tokenizer and processor


def run_inprocess(pytester, *args, diagnostics: Path = UPDATES) -> tuple[int, str]:
    """``pytest DIAGNOSTICS ARGS`` inside this process (fast: torch is imported already);
    returns the exit code and stdout + stderr."""
    result = pytester.runpytest_inprocess(str(diagnostics), f"--rootdir={ROOT}", "-p", "no:randomly",
                                          "-p", "no:cacheprovider", *map(str, args))
    return int(result.ret), "\n".join(result.outlines + result.errlines)


def run_subprocess(*args, env: dict | None = None, cwd: Path = ROOT, timeout: int = 600) -> tuple[int, str]:
    """``python -m pytest ARGS`` in a fresh process, as a user runs it."""
    return run_pytest(*args, env=env, cwd=cwd, timeout=timeout)


def error_line(output: str) -> str:
    """The one ``ERROR: ...`` line pytest prints for a usage error (asserts there is exactly one)."""
    lines = [line for line in output.splitlines() if line.startswith("ERROR: ")]
    assert len(lines) == 1, output
    return lines[0]


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder`` (itself included): size, sha256 and mtime (ns) of
    files, mtime of folders, the target of symlinks (not followed), the type of anything else
    (a FIFO is never opened). Equal snapshots: nothing was written, touched, added or removed."""
    import stat as kinds

    out = {".": ("dir", folder.stat().st_mtime_ns)}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif kinds.S_ISDIR(info.st_mode):
            out[key] = ("dir", info.st_mtime_ns)
        elif kinds.S_ISREG(info.st_mode):
            out[key] = (info.st_size, hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns)
        else:
            out[key] = ("special", kinds.S_IFMT(info.st_mode), info.st_mtime_ns)
    return out


def runnable_checkpoint(folder: Path, *, image_token: bool = True, auto_map: bool = False) -> Path:
    """A tiny random Qwen2.5-VL saved with its tokenizer and image processor, so it can run
    inference. ``image_token=False`` saves a plain-text tokenizer instead (no image token);
    ``auto_map=True`` makes config.json ask for remote modelling code."""
    import json

    sys.path.insert(0, str(ROOT / "tests" / "inference"))
    import tiny_models

    processor = tiny_models.qwen25_processor()
    model = tiny_models.qwen25_model(processor.tokenizer, layers=3, seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    if not image_token:
        tiny_models.drop_image_token(folder)
    if auto_map:
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def comparable(report: dict) -> dict:
    """A report without what legitimately differs between two runs on the same inputs: the
    creation time, the environment block, and the results-cache bookkeeping."""
    out = {k: v for k, v in report.items() if k not in ("created", "environment", "cache")}
    out["claims"] = [{k: v for k, v in claim.items() if k != "cache"} for claim in report["claims"]]
    return out


def run_diagnostics(pytester, *args, plugins=()) -> tuple[int, str]:
    """``pytest diagnostics/test_updates.py ARGS`` in this process, with extra plugin objects; the
    exit code and all output. Without plugins the output must hold no traceback."""
    result = pytester.runpytest_inprocess(str(UPDATES), f"--rootdir={ROOT}", "-p", "no:randomly",
                                          "-p", "no:cacheprovider", *map(str, args), plugins=list(plugins),
                                          no_reraise_ctrlc=True)
    out = "\n".join(result.outlines + result.errlines)
    assert plugins or ("Traceback" not in out and "INTERNALERROR" not in out), out
    return int(result.ret), out


def roles(paths: dict, **replace) -> list[str]:
    """``--origin/--base/--rl`` options for a triple, with some roles replaced."""
    paths = {**paths, **replace}
    return [f"--{role}={paths[role]}" for role in ("origin", "base", "rl") if paths.get(role)]


@contextmanager
def untouched(*folders: Path):
    """Asserts that no file under ``folders`` changed (bytes, mtime) and that nothing appeared."""
    before = [snapshot(folder) for folder in folders]
    yield
    assert [snapshot(folder) for folder in folders] == before
