#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Move xenprobe's modules into folders that read as its layers, and rewrite every reference.

The move of issue 21 ("A layout that shows the architecture") was made by this script in
one commit of moves and mechanical rewrites; it stays so that a branch begun before the
move can be brought into the new tree by running it again after the merge.

Usage:  python3 relayout.py [TREE]      (TREE defaults to the current directory)

Re-runnable and idempotent: it moves what is still in an old place (git mv), then rewrites,
in every tracked text file, what still names an old place:
  - Python imports (`from xenprobe import cli`, `from xenprobe.sweep import X`, `import ...`),
    split when one `from` line imports modules that now live in different packages;
  - dotted module names anywhere (monkeypatch strings, `python -m`, docs, pyproject);
  - slash paths anywhere (docs, debian/, MANIFEST.in, .ci/run, shell scripts);
  - Python path joins (`ROOT / "systemd" / "xenprobe.toml"`, `parents[1] / "xenprobe"`);
  - `Path(__file__)...parent` in a module that moved to another depth;
then regenerates pyproject's package list and docs/layout.md, sorts the imports it touched
(ruff --select I --fix) and prints what it could not rewrite.

New modules it does not know are left where they are (and listed); modules inside a moved
package (xenprobe/abi/*.py) move with it.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

# --------------------------------------------------------------------------------------------
# The layout: old path -> new path (files and whole directories), relative to the tree.

MOVES: dict[str, str] = {
    # cli/: the front door
    "xenprobe/cli.py": "xenprobe/cli/command.py",
    "xenprobe/entry.py": "xenprobe/cli/entry.py",
    "xenprobe/render.py": "xenprobe/cli/render.py",
    "xenprobe/legend.py": "xenprobe/cli/legend.py",
    "xenprobe/schema": "xenprobe/cli/schema",
    # xen/: talking to this dom0 and its hypervisor
    "xenprobe/abi": "xenprobe/xen/abi",
    "xenprobe/transport.py": "xenprobe/xen/transport.py",
    "xenprobe/host.py": "xenprobe/xen/host.py",
    "xenprobe/reading.py": "xenprobe/xen/reading.py",
    "xenprobe/platform_requests.py": "xenprobe/xen/platform_requests.py",
    "xenprobe/livepatch.py": "xenprobe/xen/livepatch.py",
    "xenprobe/consumers.py": "xenprobe/xen/consumers.py",
    "xenprobe/elf.py": "xenprobe/xen/elf.py",
    "xenprobe/xenstore.py": "xenprobe/xen/xenstore.py",
    "xenprobe/memop_path.py": "xenprobe/xen/memop_path.py",
    # what is probed: below the layers and the sweep, which both read it
    "xenprobe/quantities.py": "xenprobe/xen/quantities.py",
    # layers/: each way a result reaches user space
    "xenprobe/layers.py": "xenprobe/layers/protocol.py",
    "xenprobe/libxc.py": "xenprobe/layers/libxc.py",
    "xenprobe/guard.py": "xenprobe/layers/libxc_guard.py",
    "xenprobe/rawlayer.py": "xenprobe/layers/raw_absent.py",
    # probe/: what is read, against what, and the verdict
    "xenprobe/census_refs.py": "xenprobe/probe/references.py",
    "xenprobe/classify.py": "xenprobe/probe/classify.py",
    "xenprobe/judge.py": "xenprobe/probe/judge.py",
    "xenprobe/results.py": "xenprobe/probe/results.py",
    "xenprobe/sweep.py": "xenprobe/probe/sweep.py",
    "xenprobe/session.py": "xenprobe/probe/session.py",
    "xenprobe/impact.py": "xenprobe/probe/impact.py",
    # mock/: the stand-in host's Python side
    "xenprobe/mock.py": "xenprobe/mock/launcher.py",
    "xenprobe/scenario.py": "xenprobe/mock/scenario.py",
    "xenprobe/scenarios": "xenprobe/mock/scenarios",
    # support/: small utilities every layer uses
    "xenprobe/errors.py": "xenprobe/support/errors.py",
    "xenprobe/files.py": "xenprobe/support/files.py",
    "xenprobe/logs.py": "xenprobe/support/logs.py",
    "xenprobe/revision.py": "xenprobe/support/revision.py",
    "xenprobe/streams.py": "xenprobe/support/streams.py",
    "xenprobe/validate.py": "xenprobe/support/validate.py",
    # exporter/: serve
    "xenprobe/exporter/metrics.py": "xenprobe/exporter/metrics/from_sweep.py",
    "xenprobe/exporter/families.py": "xenprobe/exporter/metrics/families.py",
    "xenprobe/exporter/collectors.py": "xenprobe/exporter/metrics/collector_groups.py",
    "xenprobe/exporter/collector.py": "xenprobe/exporter/metrics/collector.py",
    "xenprobe/exporter/textfile.py": "xenprobe/exporter/metrics/textfile.py",
    "xenprobe/exporter/layer_absent.py": "xenprobe/exporter/metrics/layer_absent.py",
    "xenprobe/exporter/server.py": "xenprobe/exporter/http/server.py",
    "xenprobe/exporter/handler.py": "xenprobe/exporter/http/handler.py",
    "xenprobe/exporter/webconfig.py": "xenprobe/exporter/web/config.py",
    "xenprobe/exporter/webtls.py": "xenprobe/exporter/web/tls.py",
    "xenprobe/exporter/webauth.py": "xenprobe/exporter/web/auth.py",
    "xenprobe/exporter/webwatch.py": "xenprobe/exporter/web/watcher.py",
    # tests-only data out of the runtime package
    "xenprobe/census.py": "tests/census.py",
    # tools/: not tests, not shipped
    "tests/build-deb": "tools/build-deb",
    "tests/manpage.py": "tools/manpage.py",
    "tests/run-all": "tools/run-all",
    # contrib/: what ships to operators besides the program
    "systemd/xenprobe-alerts.yml": "contrib/prometheus/xenprobe-alerts.yml",
    "systemd/xenprobe-alerts.test.yml": "contrib/prometheus/xenprobe-alerts.test.yml",
    "systemd/xenprobe-recording.yml": "contrib/prometheus/xenprobe-recording.yml",
    "systemd/xenprobe-recording.test.yml": "contrib/prometheus/xenprobe-recording.test.yml",
    "systemd": "contrib/systemd",
    "dashboards": "contrib/grafana",
}

# A new package's __init__.py: its docstring is the folder's line in docs/layout.md.
PACKAGES: dict[str, str] = {
    "xenprobe/cli": "the front door: argument parsing, dispatch, the one-shot check's report",
    "xenprobe/xen": "this dom0 and its hypervisor: the ABI, what is probed, privcmd, the host",
    "xenprobe/layers": "each way a hypercall's result reaches user space, one Layer each",
    "xenprobe/probe": "what is read, against what reference, and the verdict",
    "xenprobe/mock": "the mock host's Python side: scenarios, their compiler, the launcher",
    "xenprobe/support": "small utilities every floor uses: errors, files, keys, logs, "
                        "revision, streams",
    "xenprobe/exporter/metrics": "the Prometheus families, their collector and the textfile",
    "xenprobe/exporter/http": "the HTTP front: the server and request handling",
    "xenprobe/exporter/web": "the exporter-toolkit web configuration: the file, its TLS "
                             "context, basic auth, reloading",
    "tools": "developer tools: the Debian build, the man page generator, the test runner",
}
# Folders of the tree described in docs/layout.md besides the Python packages.
FOLDERS: dict[str, str] = {
    "contrib/prometheus": "alert and recording rules, and their promtool tests",
    "contrib/grafana": "the Grafana dashboard",
    "contrib/systemd": "units (service, check timer) and example configs",
    "debian": "the Debian packaging",
    "native/transport": "the C transport: copy once, check, issue; the allow-list",
    "native/mock": "the LD_PRELOAD mock privcmd device and hypervisor",
    "tests": "the tests; tests/realxen boots real Xen under QEMU; tests/bench the benchmark",
    "docs": "internals for developers and operators",
}

# Lines for docs/layout.md where neither the old docs/layout.md nor the module's docstring
# gives a good one.
DESCRIPTIONS: dict[str, str] = {
    "xenprobe/": "the Python package; __version__",
    "xenprobe/__main__.py": "`python -m xenprobe`",
    "xenprobe/exporter/metrics/from_sweep.py": "the pure mapping from one sweep to metric "
                                               "families (the families' table: families.py)",
    "xenprobe/session.py": "one probe session (device, host, ladder, what sweeps learn): "
                           "check and serve",
    "xenprobe/probe/session.py": "one probe session (device, host, ladder, what sweeps "
                                 "learn): check and serve",
    "xenprobe/livepatch.py": "livepatch LIST: the request struct and its reading",
    "xenprobe/xen/livepatch.py": "livepatch LIST: the request struct and its reading",
    "xenprobe/platform_requests.py": "the structs the platform_op quantities point to",
    "xenprobe/xen/platform_requests.py": "the structs the platform_op quantities point to",
    "xenprobe/reading.py": "one layer's reading of a value, and columns of them",
    "xenprobe/xen/reading.py": "one layer's reading of a value, and columns of them",
    "xenprobe/abi/census_ops.py": "numbers of the census's read-only calls",
    "xenprobe/xen/abi/census_ops.py": "numbers of the census's read-only calls",
    "xenprobe/abi/platform.py": "platform_op's structs as xenprobe writes and reads them",
    "xenprobe/xen/abi/platform.py": "platform_op's structs as xenprobe writes and reads them",
    "xenprobe/abi/": "the ABI as data: hypercall numbers, struct layouts, per-release tables, "
                     "libxenctrl signatures",
    "xenprobe/xen/abi/": "the ABI as data: hypercall numbers, struct layouts, per-release "
                         "tables, libxenctrl signatures",
    "xenprobe/exporter/": "`xenprobe serve`: daemon, state, config, systemd notify, "
                          "`serve --watch`; metrics/, http/, web/",
    "xenprobe/scenarios/": "the shipped mock host scenarios (TOML)",
    "xenprobe/mock/scenarios/": "the shipped mock host scenarios (TOML)",
}

ROOTS = ("xenprobe", "tests", "systemd", "dashboards")  # where an old path can start
SKIP_PARTS = {"realxen"}  # tests/realxen: rewritten too, but never moved
NOTES: list[str] = []


def note(msg: str) -> None:
    NOTES.append(msg)


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True,
                          text=True).stdout


# --------------------------------------------------------------------------------------------
# Paths


def map_path(path: str) -> str | None:
    """The new place of `path` (a file or directory, '/'-separated), or None if unmoved.
    Longest old prefix wins, by whole components."""
    parts = path.split("/")
    # Prometheus rules and their tests added to systemd/ since this table was written
    if len(parts) == 2 and parts[0] == "systemd" and re.fullmatch(
            r"xenprobe-(?!web\.)[\w-]+(\.test)?\.ya?ml", parts[1]):
        return f"contrib/prometheus/{parts[1]}"
    for n in range(len(parts), 0, -1):
        head = "/".join(parts[:n])
        if head in MOVES:
            return "/".join([MOVES[head], *parts[n:]])
    return None


def dotted_of(path: str) -> str | None:
    if path.endswith(".py"):
        path = path[:-3]
    if path.endswith("/__init__"):
        path = path[: -len("/__init__")]
    if "-" in path or "." in path:
        return None
    return path.replace("/", ".")


# --------------------------------------------------------------------------------------------
# Moving


def move(tree: Path) -> list[tuple[str, str]]:
    tracked = set(git(tree, "ls-files").splitlines())
    done = []
    for old, new in sorted(MOVES.items(), key=lambda kv: -kv[0].count("/")):
        src, dst = tree / old, tree / new
        if not src.exists():
            continue
        if old.count("/") == 0 and old in ("systemd", "dashboards"):
            # move each tracked file (rules go elsewhere than units), then drop the dir
            for f in sorted(t for t in tracked if t.startswith(old + "/")):
                if (tree / f).exists():
                    target = map_path(f)
                    assert target
                    (tree / target).parent.mkdir(parents=True, exist_ok=True)
                    git(tree, "mv", f, target)
                    done.append((f, target))
            continue
        if old in tracked or any(t.startswith(old + "/") for t in tracked):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() and src.is_dir():
                # dst made by an earlier partial run: move the members
                for f in sorted(t for t in tracked if t.startswith(old + "/")):
                    target = map_path(f)
                    assert target
                    (tree / target).parent.mkdir(parents=True, exist_ok=True)
                    git(tree, "mv", f, target)
                    done.append((f, target))
            else:
                git(tree, "mv", old, new)
                done.append((old, new))
        else:
            note(f"untracked, not moved: {old}")
    # packages' __init__.py
    for pkg, doc in PACKAGES.items():
        d = tree / pkg
        if d.is_dir() and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text(f'# SPDX-License-Identifier: GPL-2.0-only\n'
                                           f'"""{doc[0].upper()}{doc[1:]}."""\n')
            git(tree, "add", f"{pkg}/__init__.py")
    # unknown new top-level modules stay where they are: say so
    for f in sorted(tree.glob("xenprobe/*.py")):
        if f.name not in ("__init__.py", "__main__.py"):
            note(f"left in place (not in the layout table): xenprobe/{f.name}")
    for f in sorted(tree.glob("xenprobe/exporter/*.py")):
        if f.name not in ("__init__.py", "daemon.py", "state.py", "config.py", "notify.py"):
            note(f"left in place (not in the layout table): xenprobe/exporter/{f.name}")
    return done


# --------------------------------------------------------------------------------------------
# Module names


class Modules:
    """Old dotted module -> new dotted module, and the set of modules that exist now."""

    def __init__(self, tree: Path) -> None:
        self.old: dict[str, str] = {}
        for old, new in MOVES.items():
            o, n = dotted_of(old), dotted_of(new)
            if o and n:
                self.old[o] = n
        self.new: set[str] = set()
        for f in tree.rglob("*.py"):
            rel = f.relative_to(tree).as_posix()
            if rel.startswith((".venv/", "build/")) or "/." in rel:
                continue
            d = dotted_of(rel)
            if d:
                self.new.add(d)
                # packages
                parts = d.split(".")
                for k in range(1, len(parts)):
                    self.new.add(".".join(parts[:k]))

    def _longest(self, parts: list[str], names: set[str] | dict[str, str]) -> int:
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in names:
                return n
        return 0

    def rewrite_chain(self, chain: str) -> str:
        """xenprobe.sweep._KNOWN -> xenprobe.probe.sweep._KNOWN; new names stay."""
        parts = chain.split(".")
        q = self._longest(parts, self.old)
        if q == 0:
            return chain
        p = self._longest(parts, self.new)
        if p > q:
            return chain  # already the new name (or a new module below an old name)
        return ".".join([self.old[".".join(parts[:q])], *parts[q:]])


CHAIN = re.compile(r"(?<![\w.$/-])((?:xenprobe|tests)(?:\.[A-Za-z_]\w*)+)")
FROM = re.compile(r"(?<![\w.])from\s+((?:xenprobe|tests)(?:\.\w+)*)\s+import\s+"
                  r"(\([^)]*\)|[\w ,]+(?:\\\n[\w ,]+)*)")


def split_names(text: str) -> list[tuple[str, str | None]]:
    text = re.sub(r"#[^\n]*", "", text).strip("()").replace("\\\n", " ")
    out = []
    for raw in text.split(","):
        item = " ".join(raw.split())
        if not item:
            continue
        if " as " in item:
            name, alias = item.split(" as ")
            out.append((name.strip(), alias.strip()))
        else:
            out.append((item, None))
    return out


def rewrite_python_imports(text: str, mods: Modules) -> str:
    def repl(m: re.Match[str]) -> str:
        package, names_text = m.group(1), m.group(2)
        trailing = ""
        if not names_text.startswith("("):
            stripped = names_text.rstrip()
            trailing = names_text[len(stripped):]
            names_text = stripped
        names = split_names(names_text)
        keep: list[tuple[str, str | None]] = []
        split: list[str] = []
        for name, alias in names:
            full = f"{package}.{name}"
            if full in mods.new and full not in mods.old:
                keep.append((name, alias))
                continue
            if full in mods.old:
                new = mods.old[full]
                parent, leaf = new.rsplit(".", 1)
                local = alias or name
                split.append(f"from {parent} import {leaf}" + (f" as {local}" if local != leaf
                                                              else ""))
            else:
                keep.append((name, alias))
        if not split:
            return m.group(0)
        # indentation of the statement, for the lines we add
        start = m.string.rfind("\n", 0, m.start()) + 1
        prefix = m.string[start:m.start()]
        inline = prefix.strip() != ""
        sep = "; " if inline else "\n" + prefix
        stmts = []
        if keep:
            stmts.append(f"from {package} import " + ", ".join(
                n + (f" as {a}" if a else "") for n, a in keep))
        stmts.extend(split)
        return sep.join(stmts) + trailing

    return FROM.sub(repl, text)


def rewrite_chains(text: str, mods: Modules) -> str:
    def repl(m: re.Match[str]) -> str:
        chain = m.group(1)
        # `from xenprobe.cli import command`: a package's submodule, already new
        after = re.match(r"\s+import\s+(\w+)", text[m.end():])
        if after and f"{chain}.{after.group(1)}" in mods.new \
                and f"{chain}.{after.group(1)}" not in mods.old:
            return chain
        return mods.rewrite_chain(chain)

    return CHAIN.sub(repl, text)


# --------------------------------------------------------------------------------------------
# Paths in text

SLASH = re.compile(r"(?<![\w./$-])((?:xenprobe|tests|systemd|dashboards)/[\w.*/-]*)")
JOIN = re.compile(r'(?P<lhs>/\s*)(?P<segs>"[\w.-]+"(?:\s*/\s*"[\w.*-]+")*)')


def rewrite_slash_paths(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        path = m.group(1)
        trail = ""
        while path.endswith((".", "/")) and path.rstrip("./") != "":
            # a sentence's full stop; keep a directory's slash
            if path.endswith("/"):
                break
            trail = path[-1] + trail
            path = path[:-1]
        new = map_path(path.rstrip("/"))
        if new is None:
            return m.group(0)
        return new + ("/" if path.endswith("/") else "") + trail

    return SLASH.sub(repl, text)


def rewrite_joins(text: str) -> str:
    """`ROOT / "systemd" / "xenprobe.toml"` -> `ROOT / "contrib" / "systemd" / ...`."""
    def repl(m: re.Match[str]) -> str:
        segs = re.findall(r'"([^"]+)"', m.group("segs"))
        if not segs or segs[0] not in ROOTS:
            return m.group(0)
        new = map_path("/".join(segs))
        if new is None:
            return m.group(0)
        seps = re.findall(r'"(\s*/\s*)"', m.group("segs"))  # keep the original line breaks
        parts = new.split("/")
        new_seps = [" / "] * (len(parts) - 1)
        for k in range(1, min(len(seps), len(new_seps)) + 1):
            new_seps[-k] = seps[-k]
        out = f'"{parts[0]}"'
        for sep, part in zip(new_seps, parts[1:], strict=False):
            out += f'{sep}"{part}"'
        return m.group("lhs") + out

    # A variable naming an old directory, used only with files that moved elsewhere
    # (SYSTEMD = ROOT / "systemd", then SYSTEMD / "xenprobe-alerts.yml").
    for var, expr, d in re.findall(r'^(\w+) = (.+?) / ((?:"[\w-]+"(?: / )?)+)$', text, re.M):
        segs = re.findall(r'"([^"]+)"', d)
        dirpath = "/".join(segs)
        uses = set(re.findall(rf'\b{var} / "([\w.-]+)"', text))
        uses |= set(re.findall(rf'"([\w.-]+)", cwd={var}\b', text))
        if not uses:
            continue
        targets = {map_path(f"{dirpath}/{u}") or f"{dirpath}/{u}" for u in uses}
        parents = {t.rsplit("/", 1)[0] for t in targets}
        if len(parents) == 1:
            (parent,) = parents
            if parent != dirpath:
                joined = " / ".join(f'"{s}"' for s in parent.split("/"))
                text = re.sub(rf'^{var} = {re.escape(expr)} / {re.escape(d)}$',
                              f"{var} = {expr} / {joined}", text, flags=re.M)
        elif dirpath in {p.rsplit("/", 1)[0] for p in MOVES}:
            note(f"{var} = {expr} / {d}: used with files now in {sorted(parents)}")
    return JOIN.sub(repl, text)


def rewrite_file_depth(text: str, old: str, new: str) -> str:
    """A module that moved deeper finds its siblings (the built .so) higher up."""
    delta = new.count("/") - old.count("/")
    if delta <= 0 or "__file__" not in text:
        return text
    return re.sub(r"Path\(__file__\)\.resolve\(\)\.parent(?![s\w])",
                  f"Path(__file__).resolve().parents[{delta}]", text)


# --------------------------------------------------------------------------------------------
# Files with a structure of their own


def rewrite_pyproject(tree: Path) -> None:
    f = tree / "pyproject.toml"
    if not f.exists():
        return
    text = f.read_text()
    pkgs = sorted(p.parent.relative_to(tree).as_posix().replace("/", ".")
                  for p in (tree / "xenprobe").rglob("__init__.py"))
    pkgs += sorted(p.relative_to(tree).as_posix().replace("/", ".")
                   for p in (tree / "xenprobe").rglob("*")
                   if (p.is_dir() and not (p / "__init__.py").exists()
                       and any(p.glob("*.toml"))) or (p.is_dir() and any(p.glob("*.json"))
                                                 and not (p / "__init__.py").exists()))
    line = "packages = [" + ", ".join(f'"{p}"' for p in sorted(set(pkgs))) + "]"
    if len(line) > 100:
        line = "packages = [\n" + "".join(f'    "{p}",\n' for p in sorted(set(pkgs))) + "]"
    text = re.sub(r"^packages = \[[^\]]*\]", lambda _: line, text, flags=re.M)
    f.write_text(text)


def rewrite_manifest(tree: Path) -> None:
    f = tree / "MANIFEST.in"
    if not f.exists():
        return
    lines = f.read_text().splitlines()
    out: list[str] = []
    for ln in lines:
        m = re.match(r"^graft (systemd|dashboards)$", ln)
        if m:
            for want in ("graft contrib", "graft tools"):
                if want not in out and want not in lines:
                    out.append(want)
            continue
        out.append(ln)
    if "graft tools" not in out and (tree / "tools").is_dir():
        i = out.index("graft tests") + 1 if "graft tests" in out else len(out)
        out.insert(i, "graft tools")
    f.write_text("\n".join(out) + "\n")


def rewrite_run_all(text: str) -> str:
    # the man page generator left tests/: keep linting it
    return re.sub(r"^(\.venv/bin/ruff check xenprobe native tests)$", r"\1 tools", text,
                  flags=re.M)


def rewrite_debian_rules(text: str) -> str:
    # ${unit#systemd/}: strip the folder the loop globbed from
    return re.sub(r"\$\$\{unit#systemd/\}", "$${unit#contrib/systemd/}", text)


# --------------------------------------------------------------------------------------------
# docs/layout.md


def first_doc_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except SyntaxError:
        doc = None
    if not doc:
        return ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    first = re.split(r"(?<=[.:;])\s", first)[0].rstrip(".:;")
    if first.count("(") > first.count(")"):
        first = first[: first.index("(")].rstrip()
    return first[0].lower() + first[1:] if first[1:2].islower() else first


def write_layout(tree: Path) -> None:
    doc = tree / "docs" / "layout.md"
    known: dict[str, str] = {}
    if doc.exists():
        for ln in doc.read_text().splitlines():
            m = re.match(r"^(\S+\.py|\S+/)\s{2,}(.+)$", ln.strip())
            if m and not ln.startswith("#"):
                known[m.group(1)] = m.group(2)
    rows: list[tuple[str, str]] = []
    modules = sorted(p.relative_to(tree).as_posix() for p in (tree / "xenprobe").rglob("*.py")
                     if "__pycache__" not in p.parts)
    for rel in modules:
        path = tree / rel
        if rel.endswith("/__init__.py"):
            folder = rel[: -len("__init__.py")]
            line = (DESCRIPTIONS.get(folder) or PACKAGES.get(folder.rstrip("/"))
                    or known.get(folder) or first_doc_line(path))
            rows.append((folder, line or "(package)"))
            continue
        line = DESCRIPTIONS.get(rel) or known.get(rel) or first_doc_line(path)
        if not line:
            note(f"docs/layout.md: no description for {rel} (no docstring)")
            line = "(undescribed)"
        rows.append((rel, line))
    for folder, line in FOLDERS.items():
        if (tree / folder).exists():
            rows.append((folder + "/", line))
    if (tree / "tools").is_dir():
        for f in sorted((tree / "tools").iterdir()):
            if f.is_file() and f.name != "__init__.py":
                rel = f.relative_to(tree).as_posix()
                rows.append((rel, known.get(rel) or {
                    "build-deb": "builds the Debian packages and runs lintian",
                    "run-all": "every test: installs what they need, ruff, mypy, pytest",
                    "manpage.py": "writes docs/xenprobe.1 from the command line parser",
                }.get(f.name, first_doc_line(f) or "(undescribed)")))
    width = max(len(p) for p, _ in rows) + 2
    body = "".join(f"{p.ljust(width)}{d}\n" for p, d in rows)
    head = ("# Source layout\n\n"
            "One line per module (tests/test_layout_doc.py fails when a module has none).\n\n"
            ) if not (tree / "xenprobe" / "probe").is_dir() else (
            "# Source layout\n\n"
            "One line per module (tests/test_layout_doc.py fails when a module has none).\n"
            "Read from the ground up, the folders are floors: `support/` (utilities), `xen/`\n"
            "(the ABI as data, what is probed, privcmd and the host), `layers/` (each way a\n"
            "result reaches user space), `probe/` (references, verdicts, the sweep and the\n"
            "session), then the faces: `mock/` and `watch/` side by side, `exporter/` (serve,\n"
            "which runs the watch in a thread for `serve --watch`), and `cli/`, the front door,\n"
            "on top. A module imports from its own floor or those below, also inside a function\n"
            "(tests/test_floors.py fails otherwise; its one listed exception: `watch\n"
            "--arm-for-service` reads the service's config from `exporter/config.py`).\n\n")
    doc.write_text(head + "```\n" + body + "```\n")


# --------------------------------------------------------------------------------------------


def rewrite_all(tree: Path, moved: list[tuple[str, str]]) -> list[Path]:
    mods = Modules(tree)
    moved_new = {new: old for old, new in moved}
    changed: list[Path] = []
    for rel in git(tree, "ls-files").splitlines():
        path = tree / rel
        if not path.is_file() or path.is_symlink():
            continue
        if rel.startswith("tests/fuzz/corpus/") or rel == "tools/relayout.py":
            continue  # the corpus is data; this script names the old places on purpose
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text
        if "\0" in text:
            continue
        new = text
        if rel.endswith(".py"):
            new = rewrite_python_imports(new, mods)
            new = rewrite_joins(new)
        new = rewrite_chains(new, mods)
        new = rewrite_slash_paths(new)
        if rel == "tools/run-all":
            new = rewrite_run_all(new)
        if rel == "debian/rules":
            new = rewrite_debian_rules(new)
        for new_path, old_path in moved_new.items():
            if rel == new_path and rel.endswith(".py"):
                new = rewrite_file_depth(new, old_path, new_path)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def leftovers(tree: Path) -> None:
    """What still names an old place, for a human to look at."""
    old_paths = [o if "/" in o else o + "/" for o in MOVES if (tree / MOVES[o]).exists()]
    pats = [re.compile(rf"(?<![\w./$-]){re.escape(o)}(?![\w-])") for o in old_paths]
    pats.append(re.compile(r'(?<!"contrib")\s/\s*"(systemd|dashboards)"'))
    # relative imports reaching out of a package are not rewritten: say where they are
    pats.append(re.compile(r"^\s*from \.\.+\w"))
    for rel in git(tree, "ls-files").splitlines():
        path = tree / rel
        if rel.startswith("tests/fuzz/corpus/") or rel == "tools/relayout.py" \
                or not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for i, ln in enumerate(lines, 1):
            for p in pats:
                if p.search(ln) and "lib/systemd" not in ln:
                    note(f"still names an old place: {rel}:{i}: {ln.strip()[:100]}")
                    break


def sort_imports(tree: Path, files: list[Path]) -> None:
    py = [str(f) for f in files if f.suffix == ".py" and f.exists()]
    if not py:
        return
    ruff = tree / ".venv" / "bin" / "ruff"
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    here = Path(__file__).resolve().parent / "layout" / ".venv" / "bin" / "ruff"
    exe = exe or (str(here) if here.exists() else None)
    if not exe:
        note("ruff not found: imports not re-sorted (run ruff check --select I --fix)")
        return
    subprocess.run([exe, "check", "--select", "I", "--fix", "-q", *py], cwd=tree,
                   capture_output=True, check=False)


def main() -> int:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    if not (tree / "xenprobe").is_dir():
        print(f"{tree}: no xenprobe/ here", file=sys.stderr)
        return 2
    moved = move(tree)
    for old, new in moved:
        print(f"moved {old} -> {new}")
    changed = rewrite_all(tree, moved)
    rewrite_pyproject(tree)
    rewrite_manifest(tree)
    write_layout(tree)
    sort_imports(tree, changed)
    git(tree, "add", "-A", "--", *[c.relative_to(tree).as_posix() for c in changed
                                   if c.exists()] or ["pyproject.toml"])
    git(tree, "add", "--", "pyproject.toml", "MANIFEST.in", "docs/layout.md")
    touched = {ln[3:].split(" -> ")[-1] for ln in git(tree, "status", "--porcelain")
               .splitlines()}
    for c in changed:
        if c.relative_to(tree).as_posix() in touched:
            print(f"rewrote {c.relative_to(tree)}")
    leftovers(tree)
    for n in NOTES:
        print(f"NOTE: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
