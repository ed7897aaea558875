"""A dataset whose ``.item`` file lacks some prices (empty, ``nan``, or no row) trains: the
price is left out of the item features with a warning, and models that never read it, or read
the other features, are not refused (before: "row 6, field 'price': missing value" for BPR)."""

from __future__ import annotations

import numpy as np

from recsys.cli import main


def _write(folder, missing: str) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(40):
        for i in rng.choice(20, size=8, replace=False):
            rows.append(f"u{u}\ti{i}\t4\t{u * 100 + i}")
    (folder / "shop.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\tbrand:token\tprice:float"]
    for i in range(20):
        price = missing if i == 5 else f"{1 + i / 2}"
        items.append(f"i{i}\tb{i % 4}\t{price}")
    (folder / "shop.item").write_text("\n".join(items) + "\n")


def test_models_train_on_data_with_missing_prices(tmp_path, caplog):
    for missing in ("", "nan"):
        data = tmp_path / f"data{missing or 'empty'}"
        _write(data, missing)
        for model in ("bpr", "twotower"):
            args = ["train", "--model", model, "--data-path", str(data / "shop.inter")]
            args += ["-o", str(tmp_path / "runs"), "--no-tracking", "--quiet"]
            with caplog.at_level("WARNING", logger="recsys"):
                assert main([*args, "--set", "train.epochs=1"]) == 0, (model, missing)
    assert "dense field 'price' has no value for 1 of 20 items" in caplog.text
