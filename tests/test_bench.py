"""bench/: the naive reference does the same work as evtlm's side, and the summary renders.

Fast checks only (a 40-user shop): the benchmarks themselves are run by `make bench`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import row  # noqa: E402
from bench.report import markdown, rebuild  # noqa: E402


@pytest.mark.slow  # seconds alone, but it imports transformers and runs prepare: ~30 s on a busy 2-core box
def test_naive_reference_builds_the_same_examples_as_prepare(tmp_path, gpt2_tokenizer_dir):
    from bench.naive_prepare import naive_prepare
    from evtlm.data.prepare import prepare
    from evtlm.recipe import SyntheticConfig, load_recipe
    from evtlm.ingest.simulate import simulate_shop, write_shop

    path = tmp_path / "shop.csv"
    write_shop(simulate_shop(SyntheticConfig(users=40, items=60, categories=4, days=30, seed=3)), path)
    over = [f"data.path={path}", "data.preset=evtlm_shop", f"model.base={gpt2_tokenizer_dir}"]
    # as shipped (a stream of daily cutoffs per user), and one prompt per cutoff as the naive side builds them
    for formulation in ("stream", "example"):
        recipe = load_recipe(REPO / "recipes" / "purchase.yaml", [*over, f"task.formulation={formulation}"])
        ours = prepare(recipe, cache_dir=tmp_path / "cache", progress=False, use_cache=False)
        naive = naive_prepare(str(path), "shop", str(gpt2_tokenizer_dir), horizon_days=recipe.task.horizon_days,
                              valid_days=recipe.split.valid_days, test_days=recipe.split.test_days,
                              max_tokens=recipe.task.max_tokens, cutoff_every_days=recipe.task.cutoff_every_days)
        assert naive["events"] == len(ours.events.events)
        # same cutoffs and history rule: the same number of examples
        assert naive["examples"] == sum(ours.report["examples"].values()), formulation
    # and, prompt per prompt, about the same tokens (a stream reads each user's history once: fewer)
    ours_tokens = sum(s["tokens"]["total"] for s in ours.report["splits"].values())
    assert abs(naive["tokens"] - ours_tokens) / ours_tokens < 0.1


def test_summary_lists_every_result_with_its_target(tmp_path):
    rows = [row("events/s", 60_000.0, 2_000.0, ">= 20x", 20.0), row("peak memory", 2.8, None, "< 4 GB", met=True, unit="GB")]
    assert rows[0]["ratio"] == 30.0 and rows[0]["met"] is True
    (tmp_path / "prepare_speed.json").write_text(json.dumps({"name": "prepare_speed", "title": "Preparation", "rows": rows,
                                                            "machine": {"cpus": 2}, "details": {"notes": ["a note"]}}))
    (tmp_path / "decode_speed.json").write_text(json.dumps({"purchase": {}}))  # not a summary result: ignored
    rebuild(tmp_path)
    md = (tmp_path / "latest.md").read_text()
    assert "| events/s | 60,000 | 2,000 | 30.00x | >= 20x | met |" in md
    assert "| peak memory GB | 2.8 | — | — | < 4 GB | met |" in md and "- a note" in md
    assert list(json.loads((tmp_path / "latest.json").read_text())) == ["prepare_speed"]
    assert markdown([]).startswith("# evtlm benchmarks") and "## Preparation" in md


@pytest.mark.parametrize("seconds, phrase", [(30, "seconds later"), (7200, "2 hours later"), (40 * 3600, "the next day")])
def test_naive_gap_phrases(seconds, phrase):
    from bench.naive_prepare import gap_phrase

    assert gap_phrase(seconds) == phrase


def test_quality_reports_model_gbt_and_never_takes_a_model_row_for_a_baseline():
    """Purchase: model+gbt gets its own row against gbt; the model's own rows (calibrated, stacked)
    are not the best baseline even where they score higher."""
    from bench.quality import summarize

    res = {"n": 100, "n_split": 100, "seconds": 60, "methods": {
        "model": {"roc_auc": 0.6}, "prior": {"roc_auc": 0.5}, "gbt": {"roc_auc": 0.8},
        "model calibrated": {"roc_auc": 0.6}, "model+gbt": {"roc_auc": 0.85}}}
    main, stacked = summarize("taobao_purchase", res)
    assert main["reference"] == 0.8 and "best baseline: gbt" in main["note"] and main["met"] is False
    assert stacked["figure"] == "taobao_purchase: ROC-AUC (model+gbt)" and stacked["evtlm"] == 0.85
    assert stacked["reference"] == 0.8 and stacked["met"] is True


def test_a_tie_is_labelled_tie_and_never_met():
    """Within 1% of the reference is a tie, whatever the target (issue 12 finding 11)."""
    tie = row("tokens/s", 100.4, 100.0, ">= 1.0x", 1.0)
    assert (tie["verdict"], tie["met"]) == ("tie", False)
    assert row("tokens/s", 99.0, 100.0, ">= 1.0x", 1.0)["verdict"] == "short"
    assert row("tokens/s", 112.0, 100.0, ">= 1.0x", 1.0)["verdict"] == "met"
    padding = row("padding efficiency", 0.984, 0.984, ">= 0.90", met=True)  # an absolute target, tied reference
    assert (padding["verdict"], padding["met"]) == ("tie", False)
    at_most = row("plain forward vs stream", 1.0, 1.0, "<= 2x", met=True, tie_rule=False)
    assert at_most["verdict"] == "met"
    assert row("context", 1.0, 1.0, "(report)")["verdict"] is None
    noisy = row("tokens/s", 105.0, 100.0, ">= 1.0x", 1.0, noise=0.17)  # runs spread +-17%: a 5% lead is noise
    assert (noisy["verdict"], noisy["met"]) == ("tie", False)


def test_quality_never_reports_a_model_that_ties_the_prior_as_met():
    """A next-item model 1.3x repeat and above popularity, but within 1% of the majority prior:
    a tie with prior, not met; a model within 1% of its reference is a tie too."""
    from bench.quality import summarize

    res = {"n": 100, "n_split": 100, "seconds": 60, "methods": {
        "model": {"ndcg@10": 0.303}, "repeat": {"ndcg@10": 0.2}, "popularity": {"ndcg@10": 0.1}, "prior": {"ndcg@10": 0.301}}}
    (r,) = summarize("taobao_next_item", res)
    assert r["met"] is False and r["verdict"] == "tie" and r["note"].startswith("tie with prior;")
    res["methods"]["model"] = {"roc_auc": 0.8385}
    res["methods"].update(gbt={"roc_auc": 0.836}, prior={"roc_auc": 0.5})
    main = summarize("purchase", res)[0]
    assert main["met"] is False and main["verdict"] == "tie" and main["note"].startswith("tie; reference: gbt")
    res["methods"]["model"] = {"roc_auc": 0.86}
    assert summarize("purchase", res)[0]["verdict"] == "met"


def test_the_trainer_reference_groups_by_length_with_full_mega_batches():
    """bench.train_speed: the Trainer gets its length-grouped sampler in this transformers'
    spelling, sorting 50-batch mega-batches as on a real-sized epoch (not 6 on a 24-batch one)."""
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from bench.train_speed import full_mega_batches, length_grouping

    kw = length_grouping(TrainingArguments)
    assert kw in ({"group_by_length": True}, {"train_sampling_strategy": "group_by_length"})
    lengths = [int(x) for x in torch.randint(5, 200, (192,), generator=torch.Generator().manual_seed(0))]
    inner = LengthGroupedSampler(8, lengths=lengths, generator=torch.Generator().manual_seed(0))

    class Base:  # the one Trainer method the subclass overrides
        def _get_train_sampler(self, *args, **kwargs):
            return inner

    order = list(full_mega_batches(Base)()._get_train_sampler())
    assert sorted(order) == list(range(192))
    batches = [[lengths[i] for i in order[b:b + 8]] for b in range(0, 192, 8)]
    real, slots = sum(lengths), sum(max(b) * len(b) for b in batches)
    assert real / slots > 0.95  # one sorted mega-batch: near-perfect padding


def test_pretrained_base_bench_skips_without_the_converted_base(tmp_path, monkeypatch, capsys):
    """bench.pretrained_base needs `make base-smollm2`; without it, one line says so and nothing runs."""
    from bench.pretrained_base import main

    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path))
    assert main(["--runs", str(tmp_path / "runs")]) == 0
    assert "skipped" in capsys.readouterr().out and not (tmp_path / "runs").exists()


def _gpu_dry_run(capsys, only: str) -> list[dict]:
    import json

    from bench.gpu import main

    assert main(["--dry-run", "--only", only]) == 0
    out = capsys.readouterr().out
    details = json.loads(out[out.index("{\n"):])
    assert details["dry_run"] and details["device"] == "cpu"
    return details["workloads"]


def test_the_gpu_check_runs_dry_on_cpu(capsys):
    """`make bench-gpu BENCH_ARGS=--dry-run`: the launch, the run and every figure it reads, tiny."""
    [w] = _gpu_dry_run(capsys, "gpt2_124m_purchase")
    assert w["log_rows"] == 3 and w["tokens_per_s"] > 0 and w["targets_per_s"] > 0
    assert w["layers"] == 1 and w["width"] == 32 and w["model_flops_per_s"] > 0


@pytest.mark.slow
def test_the_gpu_check_dry_runs_every_workload(capsys):
    workloads = _gpu_dry_run(capsys, "gpt2_124m_purchase,gpt2_124m_next_item_stream,smollm2_lora_purchase")
    stream = next(w for w in workloads if w["name"] == "gpt2_124m_next_item_stream")
    assert stream["targets_per_s"] > 0
    smol = next(w for w in workloads if w["name"] == "smollm2_lora_purchase")
    assert "skipped" in smol or smol["matmul_params"] > 1e8


def test_bf16_peaks_match_device_names():
    from bench.gpu import bf16_peak

    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989e12 and bf16_peak("NVIDIA L40S") == 362e12
    assert bf16_peak("NVIDIA L4") == 121e12 and bf16_peak("Tesla T4") is None


def test_the_next_action_ceiling_reads_the_shop_only_up_to_the_last_event():
    """The "allowed" extra features (bench.next_action_ceiling.global_rates) count every user's
    events on the last item up to the last event, never later ones; the forbidden ones read the
    target event (position ``end``) and nothing after it."""
    import pandas as pd

    from bench.next_action_ceiling import forbidden, global_rates
    from evtlm.data.history import HistoryIndex

    ev = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v", "v"], "item_id": ["a", "a", "b", "a", "a", "a"],
                       "action": ["view", "cart", "view", "cart", "view", "purchase"],
                       "timestamp": pd.to_datetime([10, 20, 30, 5, 25, 40], unit="s", utc=True)})
    index = HistoryIndex(ev)
    # v's history before its third event (t=40): v's events at 5 and 25, the last item "a"
    times = pd.to_datetime([40], unit="s", utc=True)
    start, end = index.bounds(["v"], times)
    rates = global_rates(index, start, end)
    # item "a" up to t=25, every user: u view@10, u cart@20, v cart@5, v view@25 (v's purchase@40 is the target)
    assert rates["all_item_events"].tolist() == [4.0]
    assert rates["all_item_cart"].tolist() == [0.5]
    assert rates["all_item_purchase"].tolist() == [0.0]
    # v's own transitions out of its last action (view): none yet inside the slice (cart -> view only)
    assert rates["own_after_last_n"].tolist() == [0.0]
    peek = forbidden(index, pd.DataFrame({"label_time": times}), start, end, with_item=True)
    assert peek["target_gap_s"].tolist() == [15.0]
    assert peek["target_is_last_item"].tolist() == [1.0] and peek["target_item_seen"].tolist() == [2.0]
    assert peek["target_item_carted"].tolist() == [1.0]


def test_rank_memory_reads_the_peak_at_the_saved_model_and_after_the_evaluation(tmp_path):
    """bench.rank_memory's probe: the high-water mark of each finetune process of the tree, read
    until run.json appears, then the run is stopped, or read on until it exits (the final evaluation)."""
    import os

    from bench.rank_memory import run_until_trained

    code = ("import pathlib, sys, time; block = bytearray(300 * 2**20); time.sleep(1.0); "
            "pathlib.Path(sys.argv[1], 'run.json').write_text('{}'); time.sleep(60)")
    got = run_until_trained([sys.executable, "-c", code, str(tmp_path), "finetune"], dict(os.environ), tmp_path,
                            tmp_path / "log.txt", timeout=50)
    assert len(got["peak_rss_gb"]) == 1 and got["peak_rss_gb"][0] >= 0.29, got
    assert got["seconds"] < 30, got  # stopped at run.json, not after the 60 s sleep
    # through the final evaluation: the peak at run.json, then the whole run's once it exits
    code = ("import pathlib, sys, time; a = bytearray(200 * 2**20); time.sleep(1.0); "
            "pathlib.Path(sys.argv[1], 'run.json').write_text('{}'); time.sleep(1.5); b = bytearray(300 * 2**20); time.sleep(1.0); "
            "pathlib.Path(sys.argv[1], 'metrics.json').write_text('{}')")
    (tmp_path / "run.json").unlink()
    got = run_until_trained([sys.executable, "-c", code, str(tmp_path), "finetune"], dict(os.environ), tmp_path,
                            tmp_path / "log.txt", timeout=50, through_evaluation=True)
    assert 0.19 <= got["peak_rss_gb"][0] < 0.45 and got["whole_run"]["peak_rss_gb"][0] >= 0.49, got
