"""Builds small nestbox workspaces for the end-to-end tests, sharing one offline
wheelhouse (built once per session by tests/wheelhouse/make)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

DEFAULT_TARGET = {
    "sources": ["src/**/*.py"],
    "tests": ["tests/**/*.py"],
    "source_roots": ["src", "tests"],
    "resolve": "default",
    "timeout": 120,
}


def build_wheelhouse(dest: Path) -> Path:
    """Returns a directory holding wheelhouse/ and default.lock."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(ROOT / "tests/wheelhouse/make"), str(dest / "wheelhouse"), "--lock", str(dest / "default.lock")],
        check=True, capture_output=True, text=True, timeout=600)
    return dest


def make_workspace(root: Path, resolve_dir: Path, files: dict, targets: dict | None = None,
                   lock_name: str = "default.lock") -> Path:
    """files: relative path -> text. targets: name -> overrides of DEFAULT_TARGET."""
    root.mkdir(parents=True, exist_ok=True)
    third = root / "3rdparty"
    if not third.exists():
        third.symlink_to(resolve_dir)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    targets = targets or {"app/tests": {}}
    doc = {
        "version": 1,
        "python": "/usr/bin/python3",
        "resolves": {"default": {"lockfile": f"3rdparty/{lock_name}", "wheelhouse": "3rdparty/wheelhouse"}},
        "targets": {name: {**DEFAULT_TARGET, **over} for name, over in targets.items()},
    }
    (root / "nestbox.json").write_text(json.dumps(doc, indent=2))
    os.chmod(root, 0o755)
    return root


def copy_examples(dest: Path, resolve_dir: Path) -> Path:
    """A copy of examples/ with its python-default resolve made from the shared
    wheelhouse plus the example's own packages."""
    shutil.copytree(ROOT / "examples", dest, ignore=shutil.ignore_patterns("wheelhouse", "default.lock", ".nestbox"))
    wheelhouse = dest / "3rdparty/python/wheelhouse"
    shutil.copytree(resolve_dir / "wheelhouse", wheelhouse)
    subprocess.run([str(ROOT / "tests/wheelhouse/make"), str(wheelhouse),
                    "--local-packages", str(dest / "3rdparty/python/packages/greenlib"),
                    "--lock", str(dest / "3rdparty/python/default.lock")], check=True, capture_output=True)
    return dest
