"""Wheels and lockfiles for the tests of `nestbox venv`: a minimal valid wheel with any
entries added, its lock line, and a cache to build venvs in. Shared by tests/e2e
(test_venv, test_hostile_wheels) and tests/security (test_wheels), whose conftest
files both name the binary NESTBOX."""
import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

from conftest import NESTBOX

PYTHON = "/usr/bin/python3"


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(wheelhouse, name, version, files, tag="py3-none-any", entry_points=None, extra_entries=()):
    """Writes a minimal valid wheel; files maps archive paths to bytes. extra_entries
    are (ZipInfo, data) pairs added as they are, for entries zipfile cannot express."""
    dist = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    if entry_points:
        files[f"{dist}/entry_points.txt"] = entry_points.encode()
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    path = Path(wheelhouse) / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
        for info, d in extra_entries:
            z.writestr(info, d)
    return path


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lock_line(name, version, wheel=None, digest=None, marker=None):
    digest = digest or sha256(wheel)
    m = f" ; {marker}" if marker else ""
    return f"{name}=={version}{m} \\\n    --hash=sha256:{digest}\n"


class Env:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.wheelhouse = tmp_path / "wheelhouse"
        self.wheelhouse.mkdir()
        self.cache = tmp_path / "cache"
        self.lock = tmp_path / "default.lock"

    def write_lock(self, text):
        self.lock.write_text(text)

    def venv(self, *extra, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        return subprocess.run([str(NESTBOX), "venv", "--lock", str(self.lock), "--wheelhouse", str(self.wheelhouse),
                               "--python", PYTHON, "--cache", str(self.cache), *map(str, extra)], **kw)

    def cache_entries(self):
        return {d: sorted(os.listdir(self.cache / d)) if (self.cache / d).exists() else [] for d in ("venvs", "tmp")}

    def assert_nothing_left(self):
        assert self.cache_entries() == {"venvs": [], "tmp": []}


def evil(env, name, entries):
    w = make_wheel(env.wheelhouse, name, "1.0", {f"{name}/__init__.py": b""}, extra_entries=entries)
    env.write_lock(lock_line(name, "1.0", w))
    return w


def wheel_of_zeros(env, name, mib):
    """A wheel holding mib MiB of zeros, deflated to about a thousandth of that."""
    w = make_wheel(env.wheelhouse, name, "1.0", {f"{name}/__init__.py": b""})
    with zipfile.ZipFile(w, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open(f"{name}/zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(mib):
                f.write(chunk)
    return w
