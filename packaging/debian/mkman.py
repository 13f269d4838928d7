#!/usr/bin/python3
"""Write a manual page (roff, section 1) for a click command group to stdout.

    python3 debian/mkman.py MODULE:OBJECT PROG

The page is made from the commands themselves (their usage, help and options), so it never
drifts from the code; FILES and ENVIRONMENT come from the table below (DESIGN.md, "Names and
places"). Run at package build time with Debian's python3 and python3-click.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

import click

SUMMARY = {
    "edge-enforcer": "Edgeward enforcer: runs an edge site's containers on Docker",
    "edge-control": "Edgeward control: the central service and its operator commands",
}
FILES = {
    "edge-enforcer": [
        ("/etc/edgeward/enforcer.toml", "The configuration (TOML); every key has a default."),
        (
            "/etc/edgeward/enrollment",
            "An enrollment bundle, used on first start when the "
            'configuration says enrollment = "@/etc/edgeward/enrollment".',
        ),
        ("/var/lib/edgeward/enforcer/", "State: the store, the site identity, the API token."),
        ("/run/edgeward/enforcer.sock", "The local API (mode 0660, group edgeward)."),
    ],
    "edge-control": [
        ("/etc/edgeward/control.toml", "The configuration (TOML); every key has a default."),
        ("/var/lib/edgeward/control/", "State: the CA, admin-token and the SQLite database."),
    ],
}
ENVIRONMENT = {
    "edge-enforcer": [
        ("EDGEWARD_CONFIG", "The configuration file, as --config."),
        ("EDGEWARD_LOG_LEVEL", "The daemon's log level (default INFO)."),
        (
            "EDGEWARD_URL, EDGEWARD_TOKEN",
            "The daemon's TCP address and a bearer token for the site-local commands, as --url "
            "and --token.",
        ),
    ],
    "edge-control": [
        ("EDGEWARD_CONFIG", "The configuration file, as --config."),
        (
            "EDGEWARD_URL, EDGEWARD_TOKEN, EDGEWARD_CA",
            "Control's URL, a bearer token and "
            "control's CA certificate for the operator commands, as --url, --token and --ca.",
        ),
    ],
}
SEE_ALSO = {
    "edge-enforcer": "edge-control(1), docker(1), systemctl(1)",
    "edge-control": "edge-enforcer(1), systemctl(1)",
}


def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and a leading dot or apostrophe."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def paragraphs(text: str, sep: str = ".PP") -> str:
    """Help text (click's docstring conventions) as roff paragraphs."""
    out = []
    for block in (text or "").split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if lines and lines[0] == "\b":  # click: keep these lines as they are
            out.append("\n.br\n".join(esc(line) for line in lines[1:] if line))
        elif lines:
            out.append(esc(" ".join(lines)))
    return f"\n{sep}\n".join(block for block in out if block)


def options(cmd: click.Command, ctx: click.Context, skip_help: bool = False) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        if skip_help and param.name == "help":
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, helptext = record
        out += [".TP", f"\\fB{esc(names)}\\fR", esc(helptext) or "\\&"]
    return out


def commands(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        if isinstance(cmd, click.Group):
            out += commands(cmd, sub, f"{prefix} {name}")
            continue
        usage = " ".join(cmd.collect_usage_pieces(sub))
        out += [".TP", f"\\fB{esc(prefix)} {esc(name)}\\fR {esc(usage)}"]
        out.append(paragraphs(cmd.help or cmd.short_help or "", ".IP") or "\\&")
        opts = options(cmd, sub, skip_help=True)
        if opts:
            out += [".RS", *opts, ".RE"]
    return out


def page(group: click.Group, prog: str) -> str:
    ctx = click.Context(group, info_name=prog)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    version = os.environ.get("EDGEWARD_VERSION", "")
    lines = [
        f'.TH {esc(prog.upper())} 1 "{date}" "Edgeward {esc(version)}" "Edgeward manual"',
        ".SH NAME",
        f"{esc(prog)} \\- {esc(SUMMARY[prog])}",
        ".SH SYNOPSIS",
        f"\\fB{esc(prog)}\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        paragraphs(group.help or ""),
        ".SH OPTIONS",
        *options(group, ctx),
        ".SH COMMANDS",
        *commands(group, ctx, prog),
        ".SH FILES",
    ]
    for path, what in FILES[prog]:
        lines += [".TP", f"\\fI{esc(path)}\\fR", esc(what)]
    lines.append(".SH ENVIRONMENT")
    for name, what in ENVIRONMENT[prog]:
        lines += [".TP", f"\\fB{esc(name)}\\fR", esc(what)]
    lines += [".SH SEE ALSO", esc(SEE_ALSO[prog])]
    return "\n".join(line for line in lines if line) + "\n"


def main() -> None:
    target, prog = sys.argv[1:3]
    module, _, attr = target.partition(":")
    group = getattr(importlib.import_module(module), attr)
    if not isinstance(group, click.Group):
        sys.exit(f"mkman: {target} is not a click group")
    sys.stdout.write(page(group, prog))


if __name__ == "__main__":
    main()
