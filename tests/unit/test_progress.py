"""Progress bars: ``--quiet`` on every command, and few redraws when stderr is a log file."""

import io

import pytest

from actclust import _progress
from actclust.cli import build_parser, main


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_takes_quiet(name):
    assert "--quiet" in _commands()[name]._option_string_actions


def test_a_bar_into_a_log_file_redraws_rarely():
    log = io.StringIO()  # not a terminal
    bar = _progress.tqdm(total=10, file=log)
    assert bar.mininterval >= _progress.LOG_INTERVAL
    bar.close()


def test_quiet_turns_bars_off_and_restores_the_setting():
    with _progress.quiet():
        assert _progress.tqdm(range(2), file=io.StringIO()).disable
    assert not _progress.tqdm(range(2), file=io.StringIO()).disable


def test_quiet_command_draws_no_bar_and_leaves_the_setting_alone(monkeypatch, capsys):
    drawn = []

    def command(args):
        for _ in _progress.tqdm(range(3), desc="working"):
            pass
        drawn.append(_progress._QUIET)
        return 0

    import actclust.cli.commands as commands
    monkeypatch.setattr(commands, "cmd_datasets", command)
    assert main(["datasets", "--quiet"]) == 0
    assert drawn == [True] and "working" not in capsys.readouterr().err
    assert main(["datasets"]) == 0
    assert drawn[-1] is False and "working" in capsys.readouterr().err
    assert not _progress._QUIET
