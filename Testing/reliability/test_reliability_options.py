"""Numeric options of the commands added last: refused by argparse at parse time, exit 2, one line."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("value,words", [("-1", "-1 must be greater than 0"), ("0", "0 must be greater than 0"),
                                         ("nan", "'nan' is not a finite number"), ("soon", "'soon' is not a number")])
def test_models_fetch_timeout_must_be_a_positive_number(value, words, capsys):
    from medsamkit.cli.commands import main

    with pytest.raises(SystemExit) as exit_:
        main(["models", "fetch", "litemedsam", "--timeout", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"medsamkit models fetch: error: argument --timeout: {words}"
