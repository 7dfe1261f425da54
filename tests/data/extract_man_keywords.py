"""Write tests/data/man_keywords_2.4.3.json from keepalived's own sources.

    python tests/data/extract_man_keywords.py KEEPALIVED_GIT_DIR [TAG] > OUT.json

Keyword names only (never the man page's text): per block, the names in
bold (``\\fBname``) that start a line of keepalived.conf(5)'s syntax
listings, nested by the braces around them; the sections from "ADVANCED
CONFIGURATION" on (examples of substitutions) are skipped.  Where the man
page and the parser (``install_keyword`` in the source) disagree, the
parser wins: names the parser does not know are dropped and listed under
``_man_only``; 2.3/2.4 additions only the parser has are added (``_source_only``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict

_KW = re.compile(r"^\s*\\fB([A-Za-z_][A-Za-z0-9_|-]*)")
_INSTALL = re.compile(r'install_(?:root_)?keyword(?:_root|_conditional|_quoted)?\("([^"]+)"')
#: block of the coverage test -> path of braces in the man page
_BLOCKS = {
    "top": "top",
    "global_defs": "global_defs",
    "vrrp_instance": "vrrp_instance",
    "auth_hmac": "vrrp_instance/auth_hmac",
    "vrrp_sync_group": "vrrp_sync_group",
    "vrrp_script": "vrrp_script",
    "virtual_server": "virtual_server",
    "real_server": "virtual_server/real_server",
    "SSL_GET": "virtual_server/real_server/SSL_GET",
    "url": "virtual_server/real_server/HTTP_GET|SSL_GET/url",
}
#: parser-only names added since 2.2.7, by block (from `git diff` of install_keyword)
_SOURCE_ONLY = {
    # the man page calls the dump files state/stats/json_file_location
    "global_defs": [
        "vrrp_owner_ignore_adverts",
        "state_dump_file",
        "stats_dump_file",
        "json_dump_file",
    ],
    "vrrp_instance": ["owner_ignore_adverts", "thread_timer_expired"],
}


def extract(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    stack: list[str] = []
    section = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        s = line.strip()
        if s.startswith(".SH"):
            section, stack = s[3:].strip().strip('"'), []
            continue
        if section.startswith(("ADVANCED", "KERNEL", "AUTHORS", "SEE")):
            continue
        if not s or s.startswith((".", "#")):
            continue
        m = _KW.match(line)
        plain = re.sub(r"\\f[BRIP]|\\e", "", line).split("#", 1)[0]
        net = plain.count("{") - plain.count("}")
        if m:
            for name in m.group(1).split("|"):
                if stack:
                    out["/".join(stack)].add(name)
                elif net > 0:
                    out["top"].add(name)
                elif section == "Global definitions" and not line[0].isspace():
                    out["global_defs"].add(name)
        if net > 0:
            stack.append(m.group(1) if m else plain.split()[0])
        for _ in range(max(0, -net)):
            if stack:
                stack.pop()
    return out


def main(git_dir: str, tag: str = "v2.4.3") -> None:
    def show(path: str) -> str:
        return subprocess.run(
            ["git", "-C", git_dir, "show", f"{tag}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    found = extract(show("doc/man/man5/keepalived.conf.5.in"))
    listing = subprocess.run(
        ["git", "-C", git_dir, "grep", "-h", "install_", tag, "--", "keepalived", "lib"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parser = set(_INSTALL.findall(listing))
    result: dict[str, object] = {
        "_about": f"keyword names of keepalived {tag} keepalived.conf(5) per block, "
        "checked against its parser; made by tests/data/extract_man_keywords.py",
    }
    man_only: dict[str, list[str]] = {}
    for block, path in _BLOCKS.items():
        names = set(found.get(path, set()))
        if block == "real_server":
            names = {n for n in names if not n.isupper()}  # the checkers: below
        elif block == "top":
            # the man page's real_server listing stands at the left margin
            names.discard("real_server")
        names |= set(_SOURCE_ONLY.get(block, []))
        unknown = sorted(names - parser - {"HTTP_GET"})
        if unknown:
            man_only[block] = unknown
        result[block] = sorted(names & parser)
    # checker blocks: the upper-case names in real_server (HTTP_GET and
    # SSL_GET are installed through a variable, so not checked against the parser)
    result["real_server_checkers"] = sorted(
        n for n in found.get("virtual_server/real_server", set()) if n.isupper()
    )
    result["_man_only"] = man_only
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
