"""The modality-bias frontier and each method's excess above it."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from simstd.cli import main
from simstd.datasets import synthetic_pairs
from simstd.errors import SimstdError
from simstd.evaluation import cross_share, evaluate, mixed_task, run_pairs
from simstd.evaluation.frontier import Frontier, bias_frontier, excess, frontier_thresholds
from simstd.methods import PseudoStandardization, ScoreMethod

PAIRS = synthetic_pairs(160, dim=64, seed=3)


class Bonus(ScoreMethod):
    """The paper's z plus a constant bonus for items of another modality than the query's: pure bias."""

    modality_affine = True

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self.name = f"bonus[{delta:g}]"

    def _fit(self, log, positives):
        self.base_ = PseudoStandardization("index").fit(self.corpus_, self.corpus_modalities_)

    def transform(self, raw, queries, query_modality):
        return self.base_.transform(raw, queries, query_modality) + self.delta * (
            self.corpus_modalities_ != query_modality)[None, :]


def test_frontier_interpolates_an_upper_envelope_and_excess_is_relative_to_the_ceiling():
    f = Frontier(np.arange(4.0), np.array([0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.4, 0.6, 1.0]))
    np.testing.assert_allclose(f.at([0.0, 0.25, 0.5, 0.75, 1.0]), [0.0, 0.3, 0.6, 0.8, 1.0])
    assert excess(0.5, 0.25, f, ceiling_recall=1.0) == pytest.approx(0.2)
    assert excess(0.45, 0.25, f, ceiling_recall=0.9) == pytest.approx((0.45 - 0.3) / 0.9)
    assert np.isnan(excess(0.5, 0.25, f, ceiling_recall=0.0))


def test_thresholds_reproduce_the_brute_force_ranking_for_every_bonus():
    task = mixed_task(PAIRS, seed=0)
    result = evaluate(task, [Bonus(d) for d in (-1.5, -0.4, 0.0, 0.3, 0.9, 2.5)])
    Z = PseudoStandardization("index").fit(task.corpus, task.corpus_modalities)
    S = np.vstack([Z.scores(task.queries[task.query_modalities == m], m) for m in ("text", "image")])
    assert (task.query_modalities[:80] == "text").all()  # queries are ordered text then image
    rel = task.relevance(np.arange(len(task.queries)))
    same = task.corpus_modalities[None, :] == task.query_modalities[:, None]
    need, cross_need = frontier_thresholds(S, rel, same)
    for d in (-1.5, -0.4, 0.0, 0.3, 0.9, 2.5):
        name = f"bonus[{d:g}]"
        assert (need < d).mean() == pytest.approx(result.per_query[name]["R@20"].mean())
        assert (cross_need < d).sum() / (10 * len(S)) == pytest.approx(cross_share(result, name, 10))


def test_a_pure_modality_bias_method_has_zero_excess_and_the_paper_sits_on_the_frontier():
    deltas = (-1.0, -0.3, 0.0, 0.4, 1.2)
    report = run_pairs(PAIRS, methods=["simstd-index", "csls[index]"] + [Bonus(d) for d in deltas],
                       seeds=[0, 1], protocols=["mixed"])
    for name in ["simstd-index"] + [f"bonus[{d:g}]" for d in deltas]:
        ex = report.values("mixed", name, "excess")
        # On the curve; the upper envelope can only put a point a few queries' worth below it.
        assert (ex <= 1e-12).all() and (ex > -0.02).all(), (name, ex)
    np.testing.assert_array_equal(report.values("mixed", "simstd-index", "excess"), 0.0)
    # The curve spans own-modality-first (nothing found) to other-modality-first (the ceiling).
    curve = report.frontier_curve("mixed")
    assert curve[0] < 0.1 and curve[-1] == pytest.approx(1.0)
    assert (np.diff(curve) >= -1e-12).all()


def test_frontier_needs_all_gold_in_another_modality():
    S = np.zeros((1, 3))
    with pytest.raises(SimstdError, match="other"):
        bias_frontier(S, np.array([[True, False, False]]), np.array([[True, False, False]]))
    report = run_pairs(PAIRS, methods=["raw"], seeds=[0], protocols=["plain"])
    assert not report.has_frontier("text→image")
    with pytest.raises(SimstdError, match="frontier"):
        report.values("text→image", "raw", "excess")
    header, _ = report.table_rows("text→image")
    assert "excess" not in header


def test_excess_in_table_markdown_and_json():
    report = run_pairs(PAIRS, methods=["raw", "simstd-index"], seeds=[0, 1], protocols=["mixed"])
    header, rows = report.table_rows("mixed")
    assert header[-1] == "excess"
    assert rows[0][-1] == "-" and rows[2][-1] == "+0.000 ± 0.000"
    assert "| excess |" in report.to_markdown()
    assert "excess" in report.to_text()
    d = report.to_dict()["protocols"]["mixed"]
    assert d["methods"]["simstd-index"]["metrics"]["excess"]["per_seed"] == [0.0, 0.0]
    assert len(d["frontier"]["cross@10"]) == len(d["frontier"]["R@20/ceiling"]) == 101


def test_cli_eval_json_and_plot_frontier(tmp_path):
    pytest.importorskip("matplotlib")
    np.save(tmp_path / "p.npy", PAIRS)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "p.npy"), "--methods", "raw,simstd-index",
                                  "--seeds", "1", "--protocol", "mixed", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["protocols"]["mixed"]
    assert "excess" in d["methods"]["raw"]["metrics"] and d["frontier"]["base"] == "simstd-index"
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "p.npy"), "--out", str(tmp_path / "img"),
                                  "--kind", "frontier", "--methods", "raw,simstd-index,csls[index]", "--seeds", "1"])
    assert r.exit_code == 0, r.output
    png = (tmp_path / "img" / "p_frontier.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
