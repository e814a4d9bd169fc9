"""`evtlm simulate` and `evtlm verbalize` end to end, through `evtlm.cli.main.main`."""

from __future__ import annotations

import pytest

from evtlm.cli.main import main


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    assert main(["simulate", "--users", "60", "--seed", "3", "--out", str(path)]) == 0
    return path


def test_simulate_twice_writes_identical_bytes(tmp_path, capsys):
    a, b = tmp_path / "a" / "shop.csv", tmp_path / "b" / "shop.csv"
    assert main(["simulate", "--users", "2000", "--seed", "7", "--out", str(a)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {a} (" in out and "2,000 users" in out and "shop.catalog.csv (500 items, 12 categories)" in out
    assert main(["simulate", "--users", "2000", "--seed", "7", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert (a.parent / "shop.catalog.csv").read_bytes() == (b.parent / "shop.catalog.csv").read_bytes()


def test_simulate_bad_settings_exit_2_with_one_line(tmp_path, capsys):
    assert main(["simulate", "--users", "0", "--items", "3", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid simulate settings: --users input should be greater than or equal to 1; "
                          "--items input should be greater than or equal to 10")
    assert main(["simulate", "--start", "soon", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--start 'soon' is not a date" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_verbalize_a_simulated_shop_with_its_catalog(shop_csv, capsys):
    assert main(["verbalize", str(shop_csv), "--item", "title", "--time", "none", "--max-events", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("user 1: ") and "(latest 3 of " in out[0]
    assert out[1].startswith("User 1 ") and out[1].count(".") >= 3 and "Product " not in out[1]  # titles
    assert main(["verbalize", str(shop_csv), "--user", "2", "--item", "template",
                 "--item-template", "{title} [{brand}]"]) == 0
    text = capsys.readouterr().out.splitlines()[1]
    assert text.startswith("User 2 viewed ") and "] " in text


def test_verbalize_errors_exit_2(shop_csv, tmp_path, capsys):
    assert main(["verbalize", str(shop_csv), "--user", "9999"]) == 2
    assert "error: user '9999' not in the log (60 users), --user, valid: '1', " in capsys.readouterr().err
    assert main(["verbalize", str(shop_csv), "--item", "template", "--item-template", "{colour}"]) == 2
    err = capsys.readouterr().err
    assert "{colour} is not a catalog column" in err and "title, category, brand, price" in err
    assert main(["verbalize", str(tmp_path / "missing.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["verbalize", str(shop_csv), "--tokenizer", str(tmp_path / "no-such-dir")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load the tokenizer") and "--tokenizer" in err and "shared/tokenizers/gpt2" in err


def test_verbalize_taobao_user_1(shared_data, gpt2_tokenizer_dir, capsys):
    path = shared_data / "taobao" / "UserBehavior_head84k.csv"
    assert main(["verbalize", str(path), "--preset", "taobao", "--user", "1", "--tokenizer", str(gpt2_tokenizer_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("user 1: 55 events")
    assert out[1].startswith("User 1 viewed Product 2268318. New visit 5 hours later: viewed Product 2333346.")
    assert "55 events, 11.45 per event" in out[2]
    assert out[3].startswith("tokens per event over all 84,440 events: mean ")
