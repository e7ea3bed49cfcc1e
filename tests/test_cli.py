"""The CLI's stdout holds only the result: JSON, or a table for `list`/`ablation`; whatever a library prints while a
command runs (Python `print` or C code writing to file descriptor 1) goes to stderr."""
import json
import os

import mobilevitv3.commands.list as list_command
from mobilevitv3.cli import main


def test_cli_stdout_holds_only_the_result_while_libraries_print(monkeypatch, capfd):
    def chatty(args):
        print("python-level progress")
        os.write(1, b"C-level progress\n")
        return {"top1": 99.0}
    monkeypatch.setattr(list_command, "run", chatty)
    assert main(["list"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out) == {"top1": 99.0}
    assert "python-level progress" in err and "C-level progress" in err


def test_cli_list_prints_its_table_on_stdout(capfd):
    assert main(["list", "mobilevitv3_xxs"]) == 0
    out, _ = capfd.readouterr()
    assert "mobilevitv3_xxs" in out and not out.lstrip().startswith(("{", "["))
