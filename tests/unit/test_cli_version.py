"""`synthrec --version`: the installed distribution's version, or the package's own."""

import importlib.metadata

import synthrec
from synthrec.cli import main
from synthrec.cli.app import installed_version


def test_cli_version_prints_the_installed_version_and_exits_0(capsys):
    assert main(["--version"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"synthrec {importlib.metadata.version('synthrec')}"


def test_cli_version_falls_back_to_the_package_version_when_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert installed_version() == synthrec.__version__
