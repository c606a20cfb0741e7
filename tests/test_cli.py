"""The shared command wrapper: user errors are one message and exit 2, interrupts exit 130."""

from indextts.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, run_command
from indextts.errors import DataError


def test_user_error_is_one_line_and_exit_2(capsys):
    def fail():
        raise DataError("The list x.lst does not exist. Check the path.")

    assert run_command(fail) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: The list x.lst does not exist. Check the path.\n"


def test_interrupt_exits_130_and_says_work_is_kept(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_command(interrupted) == EXIT_INTERRUPTED
    assert "finished work is kept" in capsys.readouterr().err


def test_status_passes_through():
    assert run_command(lambda: None) == 0
    assert run_command(lambda: 3) == 3
