# SPDX-License-Identifier: GPL-2.0-only
"""The source release: `python -m build` makes an sdist that carries the whole tree, and
`pip install xenprobe-*.tar.gz` in a fresh virtual environment builds and runs it.

This is what a user (or a distribution) does with a release tarball; CI does it on every
run. It needs the network or a wheel cache for pip's isolated build environment
(setuptools, cffi), as any user's install does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

import xenprobe

ROOT = Path(__file__).resolve().parent.parent
# In git but deliberately not in the source release (MANIFEST.in says why).
NOT_RELEASED = ("debian/", ".ci/", ".gitignore")


def _tracked() -> set[str]:
    p = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        pytest.skip("not a git checkout (an unpacked sdist): nothing to compare with")
    return {f for f in p.stdout.splitlines() if (ROOT / f).is_file()}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.fail("the build package is missing: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "XENPROBE_WERROR"}
    p = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out),
                        str(ROOT)], capture_output=True, text=True, env=env, timeout=600,
                       check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (tarball,) = out.glob("xenprobe-*.tar.gz")
    return tarball


def test_sdist_is_named_for_the_single_version(sdist: Path) -> None:
    assert sdist.name == f"xenprobe-{xenprobe.__version__}.tar.gz"


def test_sdist_carries_every_file_of_the_tree(sdist: Path) -> None:
    prefix = f"xenprobe-{xenprobe.__version__}/"
    with tarfile.open(sdist) as tar:
        released = {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}
    wanted = {f for f in _tracked() if not f.startswith(NOT_RELEASED)}
    assert not wanted - released, sorted(wanted - released)
    for essential in ("COPYING", "CHANGELOG.md", "native/build_transport.py",
                      "native/transport/privcmd_abi.h", "native/mock/mock.h",
                      "contrib/systemd/xenprobe.service", "tools/run-all", "docs/xenprobe.1"):
        assert essential in released, essential
    assert not any(f.startswith("debian/") or f.endswith((".so", ".o", ".pyc"))
                   for f in released), sorted(released)


def test_sdist_installs_in_a_fresh_venv_and_runs(sdist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # A user's environment: no -Werror (that is CI's, for the tree's own build).
    env = {k: v for k, v in os.environ.items()
           if k not in ("XENPROBE_WERROR", "VIRTUAL_ENV", "PYTHONPATH")}
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", str(sdist)],
                       capture_output=True, text=True, env=env, timeout=900, check=False,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    exe = env_dir / "bin" / "xenprobe"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             env=env, timeout=120, check=False, cwd=tmp_path)
    assert version.stdout.strip() == f"xenprobe {xenprobe.__version__}", version
    meta = subprocess.run([str(py), "-c", "import importlib.metadata as m; "
                           "print(m.version('xenprobe'), m.metadata('xenprobe')['License'], "
                           "[f.name for f in m.files('xenprobe') or [] if f.name == 'COPYING'])"],
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=tmp_path)
    # The installed distribution carries its licence text, and says which licence it is.
    assert meta.stdout.split() == [xenprobe.__version__, "GPL-2.0-only", "['COPYING']"], meta
    check = subprocess.run([str(exe), "check", "--mock"], capture_output=True, text=True,
                           env=env, timeout=300, check=False, cwd=tmp_path)
    assert check.returncode == 0, (check.stdout, check.stderr)  # healthy: layers agree
    assert "healthy" in check.stdout
    mismatch = subprocess.run([str(exe), "check", "--mock", "large-memory"],
                              capture_output=True, text=True, env=env, timeout=300,
                              check=False, cwd=tmp_path)
    assert mismatch.returncode == 1, (mismatch.stdout, mismatch.stderr)


def test_warnings_are_errors_only_where_ci_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "native"))
    try:
        import build_transport
    finally:
        sys.path.remove(str(ROOT / "native"))
    monkeypatch.delenv("XENPROBE_WERROR", raising=False)
    assert "-Werror" not in build_transport.compile_args()
    monkeypatch.setenv("XENPROBE_WERROR", "1")
    assert "-Werror" in build_transport.compile_args()
