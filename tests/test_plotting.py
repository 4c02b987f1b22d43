"""PNG plots (needs the optional matplotlib) and the clear error without it."""
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from simstd.cli import main
from simstd.datasets import synthetic_pairs
from simstd.errors import SimstdError

PAIRS = synthetic_pairs(60, 32, seed=2)
PNG = b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    from simstd import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SimstdError, match=r'pip install "simstd\[plot\]"'):
        plotting.plot_score_histograms(PAIRS, tmp_path / "h.png")


def test_each_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from simstd.evaluation import run_pairs
    from simstd.plotting import modality_share_curves, plot_modality_share, plot_recall_curves, plot_score_histograms

    paths = [
        plot_score_histograms(PAIRS, tmp_path / "hist.png"),
        plot_modality_share(PAIRS, tmp_path / "share.png", methods=["raw", "simstd-index"]),
        plot_recall_curves([run_pairs(PAIRS, data="synthetic", methods=["raw", "simstd-index"], seeds=[0],
                                      protocols=["mixed"])], tmp_path / "recall.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    ks, curves = modality_share_curves(PAIRS, ["raw", "simstd-index"])
    assert ks[-1] == 60
    assert curves["raw"]["text"][0] == 0.0  # raw cosine: the own modality first
    np.testing.assert_allclose(curves["raw"]["text"][-1], 0.5)  # the whole index: half each
    assert curves["simstd-index"]["text"][9] > 0.2
    with pytest.raises(SimstdError, match="PNG"):
        plot_score_histograms(PAIRS, tmp_path / "hist.pdf")


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    np.save(tmp_path / "p.npy", PAIRS)
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "p.npy"), "--out", str(tmp_path / "img"),
                                  "--kind", "share,recall", "--methods", "raw,simstd-index", "--seeds", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "img" / "p_share.png").exists() and (tmp_path / "img" / "p_recall.png").exists()
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "p.npy"), "--kind", "pie"])
    assert r.exit_code == 1 and "--kind" in r.output and "Traceback" not in r.output
