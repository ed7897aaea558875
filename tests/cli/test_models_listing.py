"""`recsys models` describes each model in one plain-text line: no reST markup, no internal
note references, no sentence cut in the middle of a paper title."""

from __future__ import annotations

from recsys.cli import main


def test_descriptions_are_plain_text_lines(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 7  # the built-ins at least
    for line in lines:
        description = line.split("]  ", 1)[1]
        assert "`" not in description and "<http" not in description, line
        assert ":math:" not in description and "notes:" not in description, line
        assert len(description) <= 120, line
        assert description.endswith((".", "…", ")")), line
    lightgcn = next(line for line in lines if line.startswith("lightgcn "))
    assert '"LightGCN: Simplifying and Powering Graph Convolution Network' in lightgcn
