"""The README stays true: its commands, its cron line and its exit codes match the code."""

from __future__ import annotations

import re

from click.testing import CliRunner

from pipeline.cli import EXIT_CONFIG, EXIT_LOCKED, EXIT_MAIL, EXIT_OK, EXIT_REJECTED, cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_fresh_machine_commands():
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert blocks[0].endswith("pip install . && consolidate run")
    assert blocks[1].endswith('pip install -e ".[test]" && python -m pytest')


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install --quiet -e ".[test]"' in ci
    assert ci.rstrip().endswith("python -m pytest")


def test_readme_cron_line_is_the_tested_one():
    line = next(
        raw for raw in (ROOT / "deploy" / "crontab.example").read_text(encoding="utf-8").splitlines()
        if raw.strip() and not raw.startswith("#") and "=" not in raw.split()[0]
    )  # fmt: skip
    assert line in README


def test_readme_exit_codes_match_the_cli():
    table = dict(re.findall(r"^\| (\d) \| (.+?) \|$", README, re.M))
    assert set(table) == {str(c) for c in (EXIT_OK, EXIT_REJECTED, EXIT_CONFIG, EXIT_LOCKED, EXIT_MAIL)}


def test_every_command_is_in_the_readme_and_has_help_with_an_example():
    runner = CliRunner()
    for name in cli.commands:
        assert f"consolidate {name}" in README, name
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "示例" in result.output, name
