"""A CLI check that plugin authors can reuse: a bad setting is refused the way users expect."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

SMALL_DATA = "synthetic-120x80x2400"
"""120 users x 80 items with planted factors: an epoch of any model takes milliseconds."""


def check_bad_setting_refused(
    model: str, setting: str, key: str, output_dir: Path, dataset: str = SMALL_DATA
) -> None:
    """``recsys train --model <model> --set <setting>`` must fail as a user error.

    That is: exit status 2, exactly one ``error:`` line on stderr and it names ``key``, no
    traceback, and no run that got as far as writing its metrics. A setting that trained
    silently wrong, or died with a traceback (exit 3), fails the check.

    Args:
        model: the registry name of the model.
        setting: one ``--set`` override, e.g. ``model.beta=inf``.
        key: text the error line must contain, usually the dotted key.
        output_dir: a scratch folder for the run (``tmp_path`` in pytest).
        dataset: the dataset to train on.

    Raises:
        AssertionError: the setting was not refused as described (the message shows stderr).
    """
    from recsys.cli import main

    runs = Path(output_dir) / "runs"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--model", model, "--dataset", dataset, "-o", str(runs),
                     "--no-tracking", "--quiet", "--set", "train.epochs=1",
                     "--set", setting])  # fmt: skip
    text = err.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2, f"{model} --set {setting}: exit status {code}, not 2\n{text}"
    assert len(errors) == 1 and key in errors[0], f"no one error line naming {key!r}\n{text}"
    assert "Traceback" not in text, text
    assert not list(runs.glob("*/metrics.json")), f"{model} --set {setting} trained to the end"
