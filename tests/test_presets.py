"""Presets: the override rules, the synthetic source, and every public format on its real files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from evtlm.errors import DataError
from evtlm.ingest.presets import PRESETS, load_event_log, resolve_data_config
from evtlm.recipe import DataConfig, Recipe


# ------------------------------------------------------------------------------- resolution
def test_explicit_fields_override_the_preset_recursively() -> None:
    cfg = resolve_data_config(DataConfig(preset="taobao", path="x.csv", columns={"user": "uid"},
                                         actions={"pv": "favorite"}, on_bad_rows="skip"))
    assert cfg.columns.user == "uid" and cfg.columns.item == "item_id"  # nested: only `user` replaced
    assert cfg.columns.extra == {"category": "category_id"}
    assert cfg.actions == {"pv": "favorite", "cart": "cart", "fav": "favorite", "buy": "purchase"}
    assert cfg.on_bad_rows == "skip" and cfg.has_header is False and cfg.timestamp.unit == "s"
    assert resolve_data_config(cfg) == cfg  # resolving twice changes nothing


def test_recipe_yaml_style_fields_set_and_no_preset_is_identity() -> None:
    recipe = Recipe.model_validate({"data": {"preset": "yoochoose", "path": "c.txt", "timestamp": {"unit": "ms"}}})
    cfg = resolve_data_config(recipe.data)
    assert cfg.timestamp.unit == "ms" and cfg.constant_action == "view" and cfg.delimiter == "\t"
    plain = DataConfig(path="a.csv")
    assert resolve_data_config(plain) is plain


def test_unknown_preset_and_options_list_the_valid_ones() -> None:
    """Checked when the data section is validated (a recipe load), not when the data is read."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="got 'taobo', expected a known preset: did you mean 'taobao'.*'yoochoose'"):
        DataConfig(preset="taobo")
    with pytest.raises(ValidationError, match="unknown option 'cancelations'.*did you mean 'cancellations'"):
        DataConfig(preset="online_retail", options={"cancelations": "drop"})
    with pytest.raises(ValidationError, match="this preset takes no options"):
        DataConfig(preset="taobao", options={"x": 1})
    with pytest.raises(ValidationError, match="without a preset"):
        DataConfig(options={"x": 1})
    with pytest.raises(DataError, match="preset 'taobao' needs the log's file.*data.path"):
        load_event_log(DataConfig(preset="taobao"))


def test_options_get_defaults_and_string_values_are_typed() -> None:
    cfg = resolve_data_config(DataConfig(preset="diginetica", options={"purchases": "train-purchases.csv"}))
    assert cfg.options == {"purchases": "train-purchases.csv", "categories": "auto", "timeframe": "timeframe"}
    assert resolve_data_config(DataConfig(preset="diginetica", options={"purchases": "none"})).options["purchases"] is None


def test_synthetic_shop_when_no_path() -> None:
    pytest.importorskip("evtlm.ingest.simulate")
    log = load_event_log(DataConfig(synthetic={"users": 20, "items": 30, "days": 7}))
    assert log.report.users == 20 and len(log.events) > 0
    assert str(log.events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert log.catalog is not None and log.report.catalog_items == len(log.catalog)


# ---------------------------------------------------------------- formats known by their columns
def test_retailrocket_events(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n1433224214164,992329,view,248676,\n"
        "1433221999827,257597,addtocart,355908,\n1433222276276,257597,transaction,355908,4000\n")
    log = load_event_log(DataConfig(preset="retailrocket", path="events.csv"), base_dir=tmp_path)
    ev = log.events
    assert ev["action"].tolist() == ["view", "cart", "purchase", "view"]
    assert ev["timestamp"].iloc[0] == pd.Timestamp(1433221332117, unit="ms", tz="UTC")
    assert ev["transaction_id"].tolist()[2] == "4000" and ev["transaction_id"].isna().sum() == 3
    assert log.report.sessions == 2


def test_rees46_events_and_catalog(tmp_path: Path) -> None:
    (tmp_path / "2019-Oct.csv").write_text(
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde\n"
        "2019-10-01 00:00:01 UTC,cart,3900821,2053013552326770905,appliances.water_heater,aqua,33.20,554748717,"
        "9333dfbd\n2019-10-01 00:05:00 UTC,purchase,3900821,2053013552326770905,appliances.water_heater,aqua,"
        "33.20,554748717,9333dfbd\n2019-10-01 00:06:00 UTC,remove_from_cart,44600062,2103807459595387724,,,"
        "35.79,541312140,\n")
    log = load_event_log(DataConfig(preset="rees46", path="2019-Oct.csv"), base_dir=tmp_path)
    ev = log.events
    assert ev["action"].tolist() == ["view", "remove_from_cart", "cart", "purchase"]
    assert ev["session_id"].tolist()[:2] == ["72d76fde", "541312140-1"]  # blank session: derived
    assert ev["price"].tolist() == [35.79, 35.79, 33.2, 33.2]
    cat = log.catalog.set_index("item_id")
    assert cat.loc["3900821", "category"] == "appliances.water_heater" and cat.loc["3900821", "brand"] == "aqua"
    assert cat.loc["44600062", "category"] == "2103807459595387724"  # no code: the numeric category id
    assert cat.loc["44600062", "brand"] == "shiseido" and cat.loc["44600062", "price"] == 35.79


# ------------------------------------------------------------------------------ real logs
@pytest.fixture(scope="module")
def taobao(shared_data: Path):
    return load_event_log(DataConfig(preset="taobao", path=str(shared_data / "taobao/UserBehavior_head84k.csv")))


def test_taobao(taobao) -> None:
    r = taobao.report
    assert r.rows_read == 84_475 and r.users == 815
    assert r.raw_actions == {"pv": 75_872, "cart": 4_497, "fav": 2_356, "buy": 1_750}
    # the events before 2017-11-25 00:00 China time are outliers of the documented range
    assert r.dropped == {"before data.start (2017-11-25 00:00:00 Asia/Shanghai)": 35}
    assert r.rows_kept == 84_475 - 35
    ev = taobao.events
    assert ev["timestamp"].min() >= pd.Timestamp("2017-11-24 16:00", tz="UTC")
    assert ev["timestamp"].max() < pd.Timestamp("2017-12-03 16:00", tz="UTC")
    assert set(ev["action"].unique()) == {"view", "cart", "favorite", "purchase"}
    assert ev["category"].notna().all() and (ev["session_id"].str.rsplit("-", n=1).str[0] == ev["user_id"]).all()


def test_online_retail(shared_data: Path) -> None:
    log = load_event_log(DataConfig(preset="online_retail",
                                    path=str(shared_data / "online_retail/online_retail.csv.gz")))
    r, ev = log.report, log.events
    assert r.rows_read == 541_909 and r.users == 4_372
    assert r.dropped == {"no CustomerID (cannot attribute to a user)": 135_080}
    assert ev["user_id"].str.fullmatch(r"\d{5}").all()  # 17850.0 -> 17850
    assert ev["quantity"].dtype == "float64" and ev["price"].dtype == "float64"
    assert set(ev["action"].unique()) == {"purchase", "return"}
    assert ev.loc[ev["action"] == "return", "session_id"].str.startswith("C").all()  # the invoice
    assert len(log.catalog) == 4_070 and log.catalog["item_id"].is_unique
    lantern = log.catalog.set_index("item_id").loc["71053"]
    assert lantern["title"] == "WHITE METAL LANTERN" and lantern["price"] > 0


RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,71053,white metal lantern,1,2010-12-01 09:00:00,3.39,,United Kingdom
C536379,71053,WHITE METAL LANTERN,-1,2011-06-01 10:00:00,3.39,17850.0,United Kingdom
"""


@pytest.mark.parametrize("cancellations", ["returned", "drop"])
def test_online_retail_options(tmp_path: Path, cancellations: str) -> None:
    (tmp_path / "retail.csv").write_text(RETAIL)
    log = load_event_log(DataConfig(preset="online_retail", path="retail.csv",
                                    options={"cancellations": cancellations}), base_dir=tmp_path)
    ev, r = log.events, log.report
    assert ev["user_id"].unique().tolist() == ["17850"]
    assert r.dropped_rows["no CustomerID (cannot attribute to a user)"] == [3]
    # June 2011 is summer time in London: 10:00 BST is 09:00 UTC
    if cancellations == "returned":
        assert ev["action"].tolist() == ["purchase", "purchase", "return"]
        assert ev["timestamp"].iloc[-1] == pd.Timestamp("2011-06-01 09:00", tz="UTC")
    else:
        assert ev["action"].tolist() == ["purchase", "purchase"]
        assert r.dropped_rows["cancellation invoice (options.cancellations: drop)"] == [4]
    titles = log.catalog.set_index("item_id")["title"].to_dict()
    assert titles == {"85123A": "WHITE HANGING HEART T-LIGHT HOLDER", "71053": "WHITE METAL LANTERN"}
    with pytest.raises(DataError, match="data.options.cancellations = 'keep'.*'returned'.*'drop'"):
        load_event_log(DataConfig(preset="online_retail", path="retail.csv", options={"cancellations": "keep"}),
                       base_dir=tmp_path)


def test_yoochoose(shared_data: Path) -> None:
    for name, rows in [("yoochoose-clicks-100k_train_full.txt", 70_278), ("yoochoose-clicks-100k_test.txt", 13_568)]:
        log = load_event_log(DataConfig(preset="yoochoose", path=str(shared_data / "yoochoose" / name)))
        ev = log.events
        assert log.report.rows_read == rows
        assert (ev["user_id"] == ev["session_id"]).all() and set(ev["action"].unique()) == {"view"}
        assert log.report.sessions == log.report.users
    first = ev[ev["user_id"] == "1"]["timestamp"].iloc[0]
    assert first == pd.Timestamp(1396860669.277, unit="s", tz="UTC").round("us")


def test_diginetica_views_purchases_categories(shared_data: Path) -> None:
    views = shared_data / "diginetica/sample_train-item-views.csv"
    log = load_event_log(DataConfig(preset="diginetica", path=str(views)))
    r, ev = log.report, log.events
    assert r.rows_read == r.rows_kept == 12_391 and r.sessions == 2_986
    assert ev["user_id"].str.startswith("s").sum() > 0  # anonymous sessions are their own user
    # session 1, first view: 2016-05-09 + 526,309 ms
    s1 = ev[ev["session_id"] == "1"].sort_values("timestamp")
    assert pd.Timestamp("2016-05-09 00:00:00.256", tz="UTC") <= s1["timestamp"].iloc[0]
    assert len(log.catalog) == 184_047 and set(log.catalog.columns) == {"item_id", "category"}
    both = load_event_log(DataConfig(preset="diginetica", path=str(views),
                                     options={"purchases": "train-purchases.csv", "categories": "none"}))
    assert both.report.rows_read == 12_391 + 18_025 and both.catalog is None
    assert both.report.events_per_action["purchase"] == 18_025 - both.report.duplicates_removed


def test_every_preset_is_documented() -> None:
    import evtlm.ingest.presets

    assert set(PRESETS) == {"evtlm_shop", "taobao", "online_retail", "yoochoose", "diginetica", "retailrocket", "rees46"}
    assert all(p.description for p in PRESETS.values())
    assert all(name in evtlm.ingest.presets.__doc__ for name in PRESETS), "the module docstring's table lists every preset"


def test_evtlm_shop_preset_reads_a_simulated_shop_back_with_its_catalog(tmp_path):
    from evtlm.ingest.presets import load_event_log
    from evtlm.recipe import DataConfig, SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop, write_shop

    shop = simulate_shop(SyntheticConfig(users=40, seed=3))
    events_path, _ = write_shop(shop, tmp_path / "shop.csv")
    back = load_event_log(DataConfig(preset="evtlm_shop", path=str(events_path)))
    assert len(back.events) == len(shop.events)
    assert back.events["action"].tolist() == shop.events["action"].tolist()
    assert back.events["item_id"].tolist() == shop.events["item_id"].tolist()
    assert back.catalog is not None and set(back.catalog["item_id"]) == set(shop.catalog["item_id"])
    assert {"title", "category", "price"} <= set(back.catalog.columns)
    no_catalog = load_event_log(DataConfig(preset="evtlm_shop", path=str(events_path), options={"catalog": "none"}))
    assert no_catalog.catalog is None


def test_every_presets_layout_is_recognised_and_only_its_own() -> None:
    """Issue 12 (6): `suggest_preset` names the preset a file's first line matches, so a known log
    read without its preset is told `--preset NAME` instead of mapping flags."""
    from evtlm.ingest.presets import _mapped, matching_presets, suggest_preset

    for name, preset in PRESETS.items():
        cfg = preset.config
        if cfg.get("has_header", True) is False:
            continue
        assert matching_presets(list(dict.fromkeys(_mapped(cfg)))) == [name]
    row = "1,2268318,2520377,pv,1511544070".split(",")
    assert matching_presets(row) == ["taobao"]
    assert matching_presets(row, header=False) == []  # names the user gave are not a data line
    assert matching_presets(row[:4]) == [] and matching_presets(row[:3] + ["click", row[4]]) == []
    assert matching_presets(row[:4] + ["2017-11-24"]) == []  # taobao times are unix seconds
    assert "--preset taobao" in suggest_preset(row) and suggest_preset(["a", "b"]) is None
