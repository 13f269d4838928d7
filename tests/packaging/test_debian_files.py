"""The Debian packaging's files agree with the code: configs, units, dependencies, scripts.

Fast checks without building or installing anything (tests/integration/test_debian_package.py
does that): the shipped configuration files document every key with its real default, the
systemd units run the real commands and keep containers running, python3-edgeward depends on
Debian's package for every dependency in pyproject.toml, and the maintainer scripts are POSIX sh.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest

from control.config import ControlConfig
from control.config import parse_config as parse_control_config
from enforcer.config.load import parse_config as parse_enforcer_config
from enforcer.config.model import EnforcerConfig

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
DEBIAN = PACKAGING / "debian"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# pyproject.toml's distribution names whose Debian package is not python3-<name>
DEBIAN_NAMES = {"pyyaml": "python3-yaml"}


def uncommented(text: str) -> str:
    """The file with every "#key = default" / "#[section]" line (no space after #) active."""
    return re.sub(r"(?m)^#(?=\S)", "", text)


def config_keys(config_class: type, skip: set[str]) -> set[tuple[str, ...]]:
    """(section, key) paths of a config dataclass tree, as TOML names (hyphens)."""
    keys: set[tuple[str, ...]] = set()
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        name = f.name.replace("_", "-")
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            keys |= {(name, *sub) for sub in config_keys(type(default), set())} or {(name,)}
        else:
            keys.add((name,))
    return keys


def lookup(data: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (DEBIAN / f"{name}.service").read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def control_stanzas() -> list[dict[str, str]]:
    stanzas = []
    for block in (DEBIAN / "control").read_text().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1].isspace() and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def relations(field: str) -> dict[str, str]:
    """A Depends-style field as package -> version constraint ("" when none)."""
    out = {}
    for item in field.replace("\n", " ").split(","):
        item = re.sub(r"<[^>]*>", "", item).strip()  # build profiles
        if not item:
            continue
        first = item.split("|")[0].strip()
        m = re.fullmatch(r"([a-z0-9][a-z0-9+.-]*|\$\{[^}]+\})\s*(?:\(([^)]*)\))?", first)
        assert m is not None, item
        out[m.group(1)] = (m.group(2) or "").strip()
    return out


# --- configuration files ---------------------------------------------------------------------


def test_the_shipped_enforcer_toml_is_valid_and_enrolls_from_the_provisioned_file() -> None:
    path = DEBIAN / "conf" / "enforcer.toml"
    config = parse_enforcer_config(path.read_text(), Path("/etc/edgeward/enforcer.toml"))
    assert config.control.enrollment == "@/etc/edgeward/enrollment"
    # the only active setting: everything else is left to the defaults
    assert set(tomllib.loads(path.read_text())) == {"control"}


def test_every_commented_default_in_enforcer_toml_is_the_real_default() -> None:
    text = uncommented((DEBIAN / "conf" / "enforcer.toml").read_text())
    text = text.replace('enrollment = "@/etc/edgeward/enrollment"', 'enrollment = ""')
    documented = parse_enforcer_config(text, Path("enforcer.toml"))
    default = parse_enforcer_config("", Path("enforcer.toml"))
    assert dataclasses.replace(documented, source=None) == dataclasses.replace(default, source=None)


def test_every_enforcer_config_key_is_documented_in_the_shipped_file() -> None:
    text = (DEBIAN / "conf" / "enforcer.toml").read_text()
    data = tomllib.loads(uncommented(text))
    keys = config_keys(EnforcerConfig, skip={"source", "devices"})
    missing = sorted(".".join(k) for k in keys if not lookup(data, k))
    assert not missing, f"enforcer.toml lacks commented defaults for {missing}"
    assert "[[devices.rule]]" in text


def test_every_control_config_key_is_documented_with_its_default() -> None:
    text = (DEBIAN / "conf" / "control.toml").read_text()
    assert tomllib.loads(text) == {}  # nothing set: all defaults
    data = tomllib.loads(uncommented(text))
    keys = config_keys(ControlConfig, skip=set())
    missing = sorted(".".join(k) for k in keys if not lookup(data, k))
    assert not missing, f"control.toml lacks commented defaults for {missing}"
    assert parse_control_config(uncommented(text)) == parse_control_config("")


# --- systemd units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "group", "subcommand"),
    [
        ("edge-enforcer", "enforcer.cli.main", "main", "run"),
        ("edge-control", "control.cli.main", "cli", "serve"),
    ],
)
def test_the_units_run_the_packaged_command_with_the_shipped_config(
    name: str, module: str, group: str, subcommand: str
) -> None:
    argv = shlex.split(unit(name)["ExecStart"][0])
    assert argv == [f"/usr/bin/{name}", "--config", f"/etc/edgeward/{name[5:]}.toml", subcommand]
    assert PYPROJECT["project"]["scripts"][name].startswith(f"{module}:")
    command_group = getattr(__import__(module, fromlist=[group]), group)
    assert isinstance(command_group, click.Group) and subcommand in command_group.commands
    assert (DEBIAN / f"{name}.install").read_text().split()[0] == f"usr/bin/{name}"


def test_the_enforcer_unit_never_stops_containers_and_keeps_the_hosts_mount_namespace() -> None:
    u = unit("edge-enforcer")
    assert u["KillMode"] in (["process"], ["mixed"])
    assert u["Restart"] == ["on-failure"]
    assert u["StateDirectory"] == ["edgeward/enforcer"]
    assert u["RuntimeDirectory"] == ["edgeward"]
    assert u["RuntimeDirectoryPreserve"] == ["yes"]
    assert u["ConfigurationDirectory"] == ["edgeward"]
    assert "User" not in u  # root: Docker, iptables, devices
    namespaced = {"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ReadOnlyPaths",
                  "ReadWritePaths", "InaccessiblePaths", "ProtectHostname", "ProtectKernelModules",
                  "ProtectKernelTunables", "ProtectControlGroups", "ProtectKernelLogs",
                  "TemporaryFileSystem", "BindPaths", "MountFlags", "PrivateMounts"}  # fmt: skip
    assert not namespaced & u.keys()
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd -pedge-enforcer --restart-after-upgrade" in rules


def test_control_runs_as_its_own_user_without_privileges() -> None:
    u = unit("edge-control")
    assert u["User"] == ["edgeward"] and u["Group"] == ["edgeward"]
    assert u["StateDirectory"] == ["edgeward/control"]
    assert u["ProtectSystem"] == ["strict"]
    assert u["NoNewPrivileges"] == ["yes"]
    assert u["CapabilityBoundingSet"] == [""]
    assert u["Restart"] == ["on-failure"]


# --- dependencies ------------------------------------------------------------------------------


def test_python3_edgeward_depends_on_debians_package_for_every_dependency() -> None:
    stanzas = {s.get("Package", "source"): s for s in control_stanzas()}
    depends = relations(stanzas["python3-edgeward"]["Depends"])
    build_depends = relations(stanzas["source"]["Build-Depends"])
    for requirement in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", requirement)
        assert m is not None, f"pyproject.toml: {requirement!r}: give a >= lower bound"
        name, bound = m.group(1).lower(), m.group(2)
        package = DEBIAN_NAMES.get(name, f"python3-{name}")
        assert depends.get(package) == f">= {bound}", (package, depends.get(package))
        assert build_depends.get(package) == f">= {bound}", (package, build_depends.get(package))
    for binary in ("edge-enforcer", "edge-control"):
        assert relations(stanzas[binary]["Depends"])["python3-edgeward"] == "= ${binary:Version}"
    assert "docker.io | docker-ce" in stanzas["edge-enforcer"]["Depends"]
    assert "iptables" in relations(stanzas["edge-enforcer"]["Depends"])


def test_build_deps_txt_lists_every_build_dependency() -> None:
    listed = {
        line.strip()
        for line in (PACKAGING / "build-deps.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert all(" " not in name for name in listed)  # CI reads one name per line
    source = control_stanzas()[0]
    wanted = set(relations(source["Build-Depends"])) - {"debhelper-compat", "dh-sequence-python3"}
    assert wanted | {"build-essential", "lintian"} <= listed, wanted - listed


# --- scripts -----------------------------------------------------------------------------------

SCRIPTS = sorted(
    p for p in DEBIAN.iterdir() if p.suffix in (".postinst", ".postrm", ".config", ".prerm")
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_maintainer_scripts_are_posix_sh_with_the_debhelper_token(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
    if script.suffix != ".config":
        assert "#DEBHELPER#" in text
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    if shutil.which("checkbashisms"):
        res = subprocess.run(["checkbashisms", str(script)], capture_output=True, text=True,
                             check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr


def test_build_debs_sh_is_posix_sh() -> None:
    script = PACKAGING / "build-debs.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    if shutil.which("checkbashisms"):
        res = subprocess.run(["checkbashisms", str(script)], capture_output=True, text=True,
                             check=False)  # fmt: skip
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("pep440", "debian"),
    [
        ("0.1.0", "0.1.0"),
        ("1.2.0rc1", "1.2.0~rc1"),
        ("1.2.0b2", "1.2.0~b2"),
        ("1.2.0.dev3", "1.2.0~~dev3"),
        ("1.2.0rc1.dev3", "1.2.0~rc1~dev3"),
        ("1.2.0.post1", "1.2.0+post1"),
        ("1.2.0+g1234", "1.2.0+g1234"),
    ],
)
def test_the_debian_version_sorts_like_the_python_version(pep440: str, debian: str) -> None:
    sys.path.insert(0, str(PACKAGING))
    try:
        from debversion import debian_version
    finally:
        sys.path.remove(str(PACKAGING))
    assert debian_version(pep440) == debian
    if shutil.which("dpkg"):  # "~" before the release, "+" after it, as in PEP 440
        release = re.match(r"[0-9.]+[0-9]", debian)
        assert release is not None
        relation = "lt" if "~" in debian else "gt" if "+" in debian else "eq"
        ok = subprocess.run(["dpkg", "--compare-versions", debian, relation, release.group(0)],
                            check=False)  # fmt: skip
        assert ok.returncode == 0


def test_the_manual_pages_list_every_command() -> None:
    for target, prog, group in (
        ("enforcer.cli.main:main", "edge-enforcer", "enforcer.cli.main"),
        ("control.cli.main:cli", "edge-control", "control.cli.main"),
    ):
        res = subprocess.run(
            [sys.executable, str(DEBIAN / "mkman.py"), target, prog],
            capture_output=True, text=True, cwd=ROOT, check=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "SOURCE_DATE_EPOCH": "0"},
        )  # fmt: skip
        page = res.stdout
        assert page.startswith(".TH ") and ".SH FILES" in page
        command_group = getattr(__import__(group, fromlist=["x"]), target.split(":")[1])
        roff_prog = prog.replace("-", "\\-")
        for name in command_group.commands:
            roff_name = name.replace("-", "\\-")
            assert f"\\fB{roff_prog} {roff_name}" in page, name
