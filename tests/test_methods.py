"""Each method's formula on tiny hand-computed cases, and the shared interface."""
import numpy as np
import pytest

from simstd import Standardizer
from simstd.errors import SimstdError
from simstd.methods import (
    BASES,
    CSLS,
    DEFAULT_METHODS,
    NNN,
    MeanCentering,
    PairZScore,
    PerQueryZ,
    PseudoStandardization,
    QBNorm,
    QueryShift,
    Raw,
    make_method,
    method_names,
)


def unit(*rows):
    x = np.array(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Three "images" and three "texts" in 2-D with easy cosines.
IMAGES = unit([1, 0], [0.6, 0.8], [0, 1])
TEXTS = unit([0.8, 0.6], [-0.6, 0.8], [0.28, 0.96])
CORPUS = np.vstack([IMAGES, TEXTS])
LABELS = ["image"] * 3 + ["text"] * 3


def test_raw_is_the_cosine():
    q = unit([1, 0])
    m = Raw().fit(CORPUS, LABELS)
    np.testing.assert_allclose(m.scores(q, "text"), [[1, 0.6, 0, 0.8, -0.6, 0.28]], atol=1e-6)


def test_gr_clip_centres_each_modality_and_renormalises():
    corpus = unit([1, 0], [0, 1], [1, 0], [1, 1])  # image mean (0.5, 0.5); text mean (0.85, 0.35)
    m = MeanCentering().fit(corpus, ["image", "image", "text", "text"])
    r = np.sqrt(0.5)
    centred_images = np.array([[r, -r], [-r, r]])
    t = np.array([[1 - 0.8535534, -0.3535534], [0.7071068 - 0.8535534, 0.7071068 - 0.3535534]])
    centred_texts = t / np.linalg.norm(t, axis=1, keepdims=True)
    q = unit([0, 1])  # an image query: centred to (-r, r)
    expected = np.array([-r, r]) @ np.vstack([centred_images, centred_texts]).T
    np.testing.assert_allclose(m.scores(q, "image")[0], expected, atol=1e-6)
    assert expected[1] == pytest.approx(1.0)  # identical after centring


def test_pair_zscore_uses_every_score_of_each_modality_pair():
    m = PairZScore().fit(CORPUS, LABELS)
    S = CORPUS @ CORPUS.T
    lab = np.array(LABELS)
    for a in ("image", "text"):
        for b in ("image", "text"):
            block = [S[i, j] for i in range(6) for j in range(6) if lab[i] == a and lab[j] == b and i != j]
            mean, sd = m.stats_[a, b]
            assert mean == pytest.approx(np.mean(block)) and sd == pytest.approx(np.std(block))
    # image->image scores {0.6, 0, 0.8} twice: mean 1.4/3, std by hand
    mean, sd = m.stats_["image", "image"]
    assert mean == pytest.approx(1.4 / 3)
    assert sd == pytest.approx(np.sqrt(((0.6 - 1.4 / 3) ** 2 + (1.4 / 3) ** 2 + (0.8 - 1.4 / 3) ** 2) / 3))
    q = unit([1, 0])
    z = m.scores(q, "image")[0]
    assert z[0] == pytest.approx((1 - mean) / sd)


def test_per_query_z_equals_the_query_s_own_mean_and_std():
    q = unit([1, 0])
    z = PerQueryZ().fit(CORPUS, LABELS).scores(q, "text")[0]
    img = np.array([1, 0.6, 0])  # by hand: mean 1.6/3, std sqrt(0.50667/3)
    np.testing.assert_allclose(z[:3], (img - 1.6 / 3) / np.sqrt(0.506666667 / 3), atol=1e-6)
    txt = np.array([0.8, -0.6, 0.28])
    np.testing.assert_allclose(z[3:], (txt - txt.mean()) / txt.std(), atol=1e-6)


def test_paper_standardization_uses_top1_of_each_indexed_item():
    m = PseudoStandardization("index").fit(CORPUS, LABELS)
    S = CORPUS @ CORPUS.T
    np.fill_diagonal(S, -np.inf)
    top_image_to_text = S[:3, 3:].max(axis=1)  # 0.96, 0.96, 0.96? by hand below
    np.testing.assert_allclose(top_image_to_text, [0.8, 0.96, 0.96], atol=1e-6)
    mean, sd = m.standardizer_.affine("image", "text")
    assert mean == pytest.approx(np.mean([0.8, 0.96, 0.96]), abs=1e-6)
    assert sd == pytest.approx(np.std([0.8, 0.96, 0.96]), abs=1e-6)
    q = unit([1, 0])
    assert m.scores(q, "image")[0, 3] == pytest.approx((0.8 - mean) / sd, abs=1e-5)


def test_top_k_and_log_variants_feed_the_standardizer():
    log = unit([1, 0.1], [0.1, 1])
    m = PseudoStandardization("log", 2).fit(CORPUS, LABELS, queries=log, query_modalities=["text", "text"])
    S = log @ CORPUS.T
    top2 = np.sort(S[:, 3:], axis=1)[:, -2:].ravel()
    mean, sd = m.standardizer_.affine("text", "text")
    assert mean == pytest.approx(top2.mean(), abs=1e-6) and sd == pytest.approx(top2.std(), abs=1e-6)
    with pytest.raises(SimstdError, match="query log"):
        PseudoStandardization("log").fit(CORPUS, LABELS)


def test_labeled_uses_gold_and_falls_back_to_pseudo_pairs_where_no_gold_exists():
    queries = unit([0.6, 0.8], [1, 0.2])
    gold = np.array([[0, 0], [1, 1]])  # text queries -> image ids 0 and 1
    m = PseudoStandardization("labeled").fit(CORPUS, LABELS, queries=queries, query_modalities="text",
                                             positives=gold)
    s = [queries[0] @ CORPUS[0], queries[1] @ CORPUS[1]]
    assert m.standardizer_.affine("text", "image") == pytest.approx((np.mean(s), np.std(s)), abs=1e-6)
    pseudo = PseudoStandardization("index").fit(CORPUS, LABELS).standardizer_
    assert m.standardizer_.affine("image", "image") == pytest.approx(pseudo.affine("image", "image"), abs=1e-6)


def test_nnn_subtracts_alpha_times_the_mean_of_the_item_s_top_k_bank_scores():
    bank = unit([1, 0], [0, 1], [0.6, 0.8])
    m = NNN(k=2, alpha=0.5).fit(CORPUS, LABELS, queries=bank, query_modalities="text")
    B = bank @ CORPUS.T
    bias = 0.5 * np.sort(B, axis=0)[-2:].mean(axis=0)
    # item 0 = (1, 0): bank scores 1, 0, 0.6 -> top-2 mean 0.8 -> bias 0.4
    assert bias[0] == pytest.approx(0.4)
    q = unit([0.8, 0.6])
    np.testing.assert_allclose(m.scores(q, "text")[0], (q @ CORPUS.T)[0] - bias, atol=1e-6)


def test_csls_is_2s_minus_query_and_item_neighbourhoods_per_target_modality():
    bank = unit([1, 0], [0, 1])
    m = CSLS(k=2).fit(CORPUS, LABELS, queries=bank, query_modalities="image")
    q = unit([1, 0])
    s = (q @ CORPUS.T)[0]  # [1, .6, 0 | .8, -.6, .28]
    r_q = np.array([0.8] * 3 + [0.54] * 3)  # top-2 means per modality: (1+.6)/2, (.8+.28)/2
    r_c = np.sort(bank @ CORPUS.T, axis=0)[-2:].mean(axis=0)  # two bank queries: mean of both
    np.testing.assert_allclose(m.scores(q, "image")[0], 2 * s - r_q - r_c, atol=1e-6)


def test_qb_norm_inverted_softmax_only_for_activated_queries():
    bank = unit([1, 0], [1, 0.05])  # both pick image 0 and text 0 as top-1
    beta = 10.0
    m = QBNorm(beta=beta).fit(CORPUS, LABELS, queries=bank, query_modalities="text")
    B = beta * (bank @ CORPUS.T)
    norm = np.log(np.exp(B).mean(axis=0)) / beta
    q_on = unit([1, 0.02])  # top-1 image 0 and top-1 text 0: activated in both modalities
    s = (q_on @ CORPUS.T)[0]
    np.testing.assert_allclose(m.scores(q_on, "text")[0], s - norm, atol=1e-6)
    q_off = unit([0, 1])  # top-1 image 2, text 2: not activated -> original order, mean normaliser
    s = (q_off @ CORPUS.T)[0]
    expected = np.r_[s[:3] - norm[:3].mean(), s[3:] - norm[3:].mean()]
    np.testing.assert_allclose(m.scores(q_off, "text")[0], expected, atol=1e-6)


def test_query_shift_and_the_standardizer_setting_agree():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = ["image"] * 20 + ["text"] * 20
    Q = unit(*(X[:5] + 0.1))
    a = QueryShift(PseudoStandardization("index")).fit(X, labels).scores(Q, "image")
    b = make_method("simstd-qshift").fit(X, labels).scores(Q, "image")
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_standardizer_query_shift_by_hand():
    std = Standardizer(method="paper", query_shift=0.5, shift_k=2).fit_scores(["a"] * 4, ["a", "a", "b", "b"], [-1, 1, -1, 1])
    z = std.transform(np.array([[3.0, 1.0, 2.0, 0.0, -1.0]]), "a", np.array(["a", "a", "a", "b", "b"]))
    # a: top-2 mean 2.5 -> minus 1.25; b: top-2 mean -0.5 -> plus 0.25
    np.testing.assert_allclose(z, [[1.75, -0.25, 0.75, 0.25, -0.75]])
    one = std.transform(np.array([3.0, 1.0]), "a", "a")  # a single query, 1-D: top-2 mean 2 -> minus 1
    np.testing.assert_allclose(one, [2.0, 0.0])


def test_standardizer_query_shift_is_saved_and_merged(tmp_path):
    std = Standardizer(method="paper", query_shift=0.5, shift_k=3).fit_scores("a", "a", [0.1, 0.3])
    std.save(tmp_path / "s.json")
    back = Standardizer.load(tmp_path / "s.json")
    assert (back.query_shift, back.shift_k) == (0.5, 3)
    merged = std.merge(back)
    assert (merged.query_shift, merged.shift_k) == (0.5, 3)
    assert Standardizer(method="paper").fit_scores("a", "a", [0.1, 0.3]).query_shift == 0  # off by default
    with pytest.raises(SimstdError, match="query_shift"):  # refused at fit, as scikit-learn does
        Standardizer(method="paper", query_shift=-1).fit_scores("a", "a", [0.1, 0.3])
    bad = Standardizer(method="paper").fit_scores("a", "a", [0.1, 0.3])
    bad.query_shift = -1  # set after the fit: transform checks again
    with pytest.raises(SimstdError, match="query_shift"):
        bad.transform([0.2], "a", "a")


def test_affine_methods_keep_each_modality_s_order():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = np.array(["image"] * 15 + ["text"] * 15)
    Q = unit(*rng.standard_normal((7, 6)))
    log = unit(*rng.standard_normal((10, 6)))
    raw = Q @ X.T
    for name in list(BASES) + ["qshift+per-query"]:
        m = make_method(name)
        if not m.modality_affine:
            continue
        kw = {}
        if m.needs_log or m.needs_labels:
            kw = {"queries": log, "query_modalities": "text", "positives": np.array([[0, 0], [1, 1], [2, 16], [3, 17]])}
        Z = m.fit(X, labels, **kw).scores(Q, "text")
        for side in ("image", "text"):
            c = labels == side
            np.testing.assert_array_equal(np.argsort(-Z[:, c], axis=1), np.argsort(-raw[:, c], axis=1), name)


def test_registry_names_and_errors():
    assert set(DEFAULT_METHODS) <= set(method_names())
    for name in method_names():  # every listed name builds
        make_method(name)
    assert make_method("nnn").name == "nnn"
    assert make_method("csls+simstd-index").name == "csls+simstd-index"
    assert make_method("csls+simstd-index[index]").bank == "index"
    assert not make_method("csls+simstd-index[index]").needs_log
    assert make_method("nnn").needs_log
    for bad in ("nope", "nnn+csls", "qshift[index]", "raw[index]"):
        with pytest.raises(SimstdError):
            make_method(bad)
    with pytest.raises(SimstdError, match="not fitted"):
        Raw().scores(unit([1, 0]), "text")
    with pytest.raises(SimstdError, match="no score statistics|no mean"):
        PairZScore().fit(CORPUS, LABELS).scores(unit([1, 0]), "audio")


def test_hubness_is_csls_with_the_index_as_bank_over_a_per_pair_tail_scale():
    from simstd.methods import HubnessCorrection

    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = np.array(["image"] * 14 + ["text"] * 16)
    m = HubnessCorrection(k=3, quantile=0.9).fit(X, labels)
    assert m.name == "hubness[k=3,q=0.9]" and not m.needs_log and not m.modality_affine
    q = rng.standard_normal((4, 5))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    got = m.scores(q, "text")
    # By hand: rho_q^b over the items of b, rho_c^a over the other indexed items of a (self left out).
    S, C = q @ X.T, X @ X.T
    np.fill_diagonal(C, -np.inf)
    expect = np.empty_like(S)
    for b in ("image", "text"):
        cb, ca = labels == b, labels == "text"
        rho_q = np.sort(S[:, cb], axis=1)[:, -3:].mean(axis=1)
        rho_c = np.sort(C[np.ix_(ca, cb)], axis=0)[-3:].mean(axis=0)
        pair = C[np.ix_(ca, cb)]
        v = pair[np.isfinite(pair)]
        cut = np.quantile(v, 0.9)
        beta = v[v > cut].mean() - cut
        expect[:, cb] = (2 * S[:, cb] - rho_q[:, None] - rho_c[None, :]) / beta
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)  # the corpus is stored as float32


def test_hubness_with_the_paper_scale_equals_csls_on_standardized_scores():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 6))
    X[:20, 0] += 2  # a modality gap
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = ["image"] * 20 + ["text"] * 20
    q = X[:5] + 0.1 * rng.standard_normal((5, 6))
    a = make_method("hubness[beta=pseudo]").fit(X, labels).scores(q, "image")
    b = make_method("csls+simstd-index[index]").fit(X, labels).scores(q, "image")
    np.testing.assert_allclose(a, b, atol=1e-9)  # the paper's means cancel; its stds are the scale


def test_hubness_names_and_bad_settings():
    assert make_method("hubness").name == "hubness"
    assert (make_method("hubness[k=20,beta=pseudo]").k, make_method("hubness[k=20,beta=pseudo]").beta) == (20, "pseudo")
    for bad in ("hubness[k=0]", "hubness[beta=mean]", "hubness[x=1]", "hubness[k=a]", "hubness(k=3)", "hubness[q=1]"):
        with pytest.raises(SimstdError):
            make_method(bad)


def test_hubness_with_the_query_term_on_corrected_similarities_by_hand():
    from simstd.methods import HubnessCorrection

    rng = np.random.default_rng(3)
    X = rng.standard_normal((24, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = np.array(["image"] * 10 + ["text"] * 14)
    m = HubnessCorrection(k=2, query="corrected").fit(X, labels)
    assert m.name == "hubness[k=2,query=corrected]"
    q = X[:3] + 0.05 * rng.standard_normal((3, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    C = X @ X.T
    np.fill_diagonal(C, -np.inf)
    a = "image"
    ca = labels == a
    rho = np.sort(C[ca], axis=0)[-2:].mean(axis=0)  # each item's 2 best cosines among the other images
    S = q @ X.T
    expect = np.empty_like(S)
    for b in ("image", "text"):
        cb = labels == b
        U = S[:, cb] - rho[cb] / 2
        Ub = C[np.ix_(ca, cb)] - rho[cb] / 2
        offset = np.mean(np.sort(C[np.ix_(ca, cb)], axis=1)[:, -2:].mean(axis=1) - np.sort(Ub, axis=1)[:, -2:].mean(axis=1))
        r_u = np.sort(U, axis=1)[:, -2:].mean(axis=1)
        expect[:, cb] = (2 * U - r_u[:, None] - offset) / m.scale_[a, b]
    np.testing.assert_allclose(m.scores(q, a), expect, rtol=1e-5, atol=1e-6)


def test_library_hubness_matrix_and_index_search_agree():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 8))
    X[:30, 0] += 2.5  # a modality gap
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = ["image"] * 30 + ["text"] * 30
    q = X[30:35] + 0.1 * rng.standard_normal((5, 8))
    matrix = make_method("simstd-hubness").fit(X, labels)
    search = make_method("simstd-hubness[search]").fit(X, labels)
    assert matrix.standardizer_.method == "hubness" and search.index_.standardizer is search.standardizer_
    np.testing.assert_allclose(search.scores(q, "text"), matrix.scores(q, "text"), atol=1e-4)
