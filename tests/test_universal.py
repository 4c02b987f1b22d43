"""The universal protocol: relevant items in both modalities, relevance from labels or human captions."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from simstd.cli import main
from simstd.datasets import synthetic_pairs, topical_pairs
from simstd.errors import SimstdError
from simstd.evaluation import caption_relevance, label_relevance, load_relevance, run_pairs, universal_task
from simstd.evaluation.relevance import content_words, singular

MOTO = ["A black Honda motorcycle parked in front of a garage.", "A Honda motorcycle parked in a grass driveway",
        "A black Honda motorcycle with a dark burgundy seat.", "Ma motorcycle parked on the gravel in front of a garage",
        "A motorcycle with its brake extended standing outside"]
MOTO2 = ["Two motorcycles on a dirt road", "A man rides his motorcycle", "motorcycles parked by a road",
         "Black motorcycle in the sun", "a red motorcycle near trees"]
CAT = ["A cat sitting on a black couch", "a white cat on the sofa", "The cat sleeps on a couch",
       "A black cat sits near a man", "cats on a couch"]


def test_content_words_need_three_captions_and_skip_stopwords_verbs_and_people():
    assert content_words(MOTO) == {"honda", "motorcycle"}  # black: a colour; parked: -ed; garage: 2 of 5
    assert content_words(CAT) == {"cat", "couch"}  # "cats" -> cat; "man" never counts
    assert (singular("benches"), singular("puppies"), singular("bus"), singular("glass")) == \
        ("bench", "puppy", "bus", "glass")
    rel = caption_relevance([MOTO, MOTO2, CAT])
    np.testing.assert_array_equal(rel, [[False, True, False], [True, False, False], [False, False, False]])


def test_label_relevance_and_relevance_files(tmp_path):
    np.testing.assert_array_equal(label_relevance([1, 2, 1]), [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    np.save(tmp_path / "labels.npy", np.array([1, 2, 1]))
    np.testing.assert_array_equal(load_relevance(tmp_path / "labels.npy", 3), label_relevance([1, 2, 1]))
    (tmp_path / "meta.json").write_text(json.dumps([{"all_captions": c} for c in (MOTO, MOTO2, CAT)]))
    assert load_relevance(tmp_path / "meta.json", 3)[0, 1]
    with pytest.raises(SimstdError, match="3 rows of captions for 4 pairs"):
        load_relevance(tmp_path / "meta.json", 4)
    with pytest.raises(SimstdError, match="expected 4 labels"):
        load_relevance(tmp_path / "labels.npy", 4)
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(SimstdError, match="all_captions"):
        load_relevance(tmp_path / "bad.json", 3)
    with pytest.raises(SimstdError, match="does not exist"):
        load_relevance(tmp_path / "nope.npy", 3)


def test_topical_pairs_keep_synthetic_pairs_and_nest_subtopics_in_topics():
    np.testing.assert_array_equal(topical_pairs(200, 32, seed=4).pairs, synthetic_pairs(200, 32, seed=4))
    t = topical_pairs(400, 64, n_topics=5, n_subtopics=3, seed=1)
    assert t.subtopic.max() < 15 and (t.subtopic // 3 == t.topic).all()
    P = t.pairs.astype(np.float64)
    C = P[0] @ P[1].T
    same_sub = t.subtopic[:, None] == t.subtopic[None, :]
    np.fill_diagonal(same_sub, False)
    other_topic = t.topic[:, None] != t.topic[None, :]
    assert C[same_sub].mean() > C[other_topic].mean() + 0.05  # relevance is visible across modalities


def test_universal_task_has_relevant_items_in_both_modalities_and_never_the_query_itself():
    t = topical_pairs(120, 32, n_topics=4, n_subtopics=3, seed=0)
    rel = label_relevance(t.subtopic)
    task = universal_task(t.pairs, rel, seed=3)
    assert task.is_topical
    ni = len(task.corpus) // 2
    assert (task.corpus_modalities[:ni] == "image").all() and (task.corpus_modalities[ni:] == "text").all()
    # Corpus rows are pairs: image i and text i of the same indexed pair.
    idx = [int(np.flatnonzero((t.pairs[0] == task.corpus[i]).all(axis=1))[0]) for i in range(ni)]
    np.testing.assert_array_equal(task.corpus[ni:], t.pairs[1][idx])
    nq = len(task.queries) // 2
    qpairs = [int(np.flatnonzero((t.pairs[1] == task.queries[j]).all(axis=1))[0]) for j in range(nq)]
    assert not set(qpairs) & set(idx)  # a query's own pair is never indexed
    full = task.relevance(np.arange(len(task.queries)))
    for j, p in enumerate(qpairs):
        expect = rel[p, idx]
        np.testing.assert_array_equal(full[j, :ni], expect)  # its images
        np.testing.assert_array_equal(full[j, ni:], expect)  # and their captions
        np.testing.assert_array_equal(full[nq + j], full[j])  # the image query of the same pair
    assert task.describe()["queries"] == {"image": nq, "text": nq}
    with pytest.raises(SimstdError, match="relevance must be"):
        universal_task(t.pairs, rel[:5], seed=0)


def test_preferring_one_modality_costs_recall_on_the_universal_protocol():
    t = topical_pairs(400, 64, n_subtopics=4, seed=2)
    report = run_pairs(t.pairs, methods=["raw", "simstd-index"], seeds=[0], protocols=["universal"],
                       relevance=label_relevance(t.subtopic))
    header, rows = report.table_rows("universal")
    assert header == ["method", "NDCG@10", "mAP@R", "R-Precision", "same-recall@10", "cross-recall@10", "cross@10"]
    raw = report.values("universal", "raw", "cross-recall@10")[0]
    assert raw == 0.0  # raw cosine never reaches the other modality: its relevant items are all missed
    assert report.values("universal", "simstd-index", "cross-recall@10")[0] > 0.15
    assert not report.has_frontier("universal")
    d = report.to_dict()["protocols"]["universal"]["methods"]["raw"]["metrics"]
    assert "same-recall@10" in d and "excess" not in d and "of_ceiling" not in d["NDCG@10"]
    with pytest.raises(SimstdError, match="universal protocol needs"):
        run_pairs(t.pairs, methods=["raw"], seeds=[0], protocols=["universal"])


def test_cli_eval_protocol_universal(tmp_path):
    t = topical_pairs(200, 32, n_subtopics=3, seed=0)
    np.save(tmp_path / "p.npy", t.pairs)
    np.save(tmp_path / "labels.npy", t.subtopic)
    runner = CliRunner()
    r = runner.invoke(main, ["eval", str(tmp_path / "p.npy"), "--protocol", "universal", "--relevance",
                             str(tmp_path / "labels.npy"), "--methods", "raw,hubness", "--seeds", "1"])
    assert r.exit_code == 0, r.output
    assert "universal" in r.output and "same-recall@10" in r.output and "hubness" in r.output
    r = runner.invoke(main, ["eval", str(tmp_path / "p.npy"), "--methods", "raw", "--seeds", "1"])
    assert r.exit_code == 0 and "universal" not in r.output  # all: no relevance, so no universal table
    r = runner.invoke(main, ["eval", str(tmp_path / "p.npy"), "--protocol", "universal", "--methods", "raw"])
    assert r.exit_code == 1 and "--relevance" in r.output and "Traceback" not in r.output


def test_caption_relevance_on_real_coco_and_cli_finds_the_metadata(features_dir):
    meta = json.loads((features_dir / "features_clip_coco_val2017_meta.json").read_text())
    rel = caption_relevance([r["all_captions"] for r in meta])
    n = rel.sum(axis=1)
    assert np.median(n) == 27 and (n == 0).sum() == 38  # the numbers the relevance docstring states
    r = CliRunner().invoke(main, ["eval", str(features_dir / "features_clip.npy"), "--methods",
                                  "simstd-index,hubness", "--seeds", "1", "--markdown"])
    assert r.exit_code == 0, r.output
    assert "universal: index 250 image, 250 text" in r.output
