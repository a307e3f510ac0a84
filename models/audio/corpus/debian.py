"""What the manifest says about a Debian package: its exact installed version, the licences its copyright
file names, and the files it installed. Everything comes from dpkg's own records on this machine."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DOC_ROOT = Path("/usr/share/doc")
# A copyright file that is not in the machine-readable format (DEP-5) states its licence in prose;
# the GPL's standard notice is the one such prose among the corpus's packages.
_GPL_NOTICE = re.compile(r"GNU General Public License.{0,200}?version (\d)(?P<later>.{0,60}?any later)?", re.S)


class PackageError(RuntimeError):
    """A package the corpus needs is not installed; the message says which and how to install it."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licences: tuple[str, ...]  # the License: field names of its copyright file, sorted, deduplicated
    copyright: str  # where the licences were read

    def to_manifest(self) -> dict[str, object]:
        return {"package": self.name, "version": self.version, "licences": list(self.licences),
                "copyright": self.copyright}


def _dpkg_query(*args: str) -> str:
    done = subprocess.run(["dpkg-query", *args], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout if done.returncode == 0 else ""


def installed_version(name: str) -> str:
    status = _dpkg_query("-W", "-f", "${db:Status-Status} ${Version}", name).split()
    if len(status) != 2 or status[0] != "installed":
        raise PackageError(f"Debian package {name} is not installed: run `make audio-corpus` (it installs it) "
                           f"or `apt-get install --no-install-recommends {name}`")
    return status[1]


def licences_in(copyright_text: str) -> tuple[str, ...]:
    """The licence names of a copyright file: its `License:` fields, else the GPL notice of a prose one."""
    names = {line.split(":", 1)[1].strip() for line in copyright_text.splitlines() if line.startswith("License:")}
    names.discard("")
    if not names:
        for match in _GPL_NOTICE.finditer(copyright_text):
            names.add(f"GPL-{match.group(1)}{'+' if match.group('later') else ''}")
    return tuple(sorted(names)) or ("not stated in the copyright file",)


def describe(name: str) -> Package:
    version = installed_version(name)
    path = DOC_ROOT / name / "copyright"
    text = path.read_text(errors="replace") if path.is_file() else ""
    return Package(name, version, licences_in(text) if text else ("no copyright file",), str(path))


def installed_files(name: str) -> list[Path]:
    """The regular files (symbolic links resolved, each once) the package installed, sorted."""
    installed_version(name)
    paths = {Path(line).resolve() for line in _dpkg_query("-L", name).splitlines() if line.strip()}
    return sorted(p for p in paths if p.is_file())
