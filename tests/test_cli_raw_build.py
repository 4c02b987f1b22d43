"""`simstd build --images --texts`, `fit` and `query "..."` / `query --image` end
to end through the CLI, with a real open_clip architecture and random weights
saved to a local file (no download). Needs the `clip` extra."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

encoders = pytest.importorskip("simstd.encoders")
try:
    encoders._import_clip_stack()
except encoders.EncoderUnavailableError as exc:  # pragma: no cover - depends on env
    pytest.skip(f"clip extra not usable: {exc}", allow_module_level=True)

from PIL import Image  # noqa: E402

from simstd import MixedIndex  # noqa: E402
from simstd.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, clip_checkpoint):
    root = tmp_path_factory.mktemp("raw")
    ckpt = clip_checkpoint  # shared with the other tests (conftest.py): saved once per session
    images = root / "photos"
    (images / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        folder = images / "nested" if i % 2 else images
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    texts = root / "captions.txt"
    texts.write_text("a red bike\n\na cat on a sofa\na bowl of fruit\n")
    return root, ckpt, images, texts


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_build_fit_and_query_from_raw_files(corpus):
    root, ckpt, images, texts = corpus
    db = root / "db.faiss"
    r = cli("build", "--images", images, "--texts", texts, "--model", encoders.TEST_MODEL,
            "--pretrained", ckpt, "--batch-size", 4, "--out", db)
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "broken.jpg" in r.output  # reported, build goes on
    assert "captions.txt:2" in r.output  # the empty line is reported with its number
    index = MixedIndex.load(db)
    assert index.counts == {"image": 6, "text": 3}
    assert index.model.startswith(f"open_clip:{encoders.TEST_MODEL}:")
    assert cli("fit", "--index", db).exit_code == 0

    r = cli("query", "a red bike", "--index", db, "-k", 9, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    hits = [json.loads(line) for line in r.output.splitlines()]
    assert len(hits) == 9 and {h["modality"] for h in hits} == {"text", "image"}
    assert all(h["query"] == "a red bike" for h in hits)
    assert any(h.get("text") == "a red bike" for h in hits)
    r = cli("query", "--image", images / "p0.jpg", "--index", db, "-k", 3, "--format", "jsonl")
    assert r.exit_code == 0, r.output
    top = json.loads(r.output.splitlines()[0])
    assert top["modality"] == "image" and top["path"].endswith("p0.jpg")  # an image finds itself first


def test_resume_embeds_only_what_is_new(corpus):
    root, ckpt, images, texts = corpus
    db = root / "resume.faiss"
    args = ["build", "--images", images, "--texts", texts, "--model", encoders.TEST_MODEL,
            "--pretrained", ckpt, "--out", db]
    assert cli(*args).exit_code == 0
    r = cli(*args, "--resume")
    assert r.exit_code == 0 and "up to date" in r.output and "6 image item(s) already indexed" in r.output
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(images / "new.png")
    with texts.open("a") as fh:
        fh.write("a new caption\n")
    try:
        r = cli(*args, "--resume")
        assert r.exit_code == 0, r.output
        assert MixedIndex.load(db).counts == {"image": 7, "text": 4}
    finally:
        (images / "new.png").unlink()


def test_bad_raw_inputs(corpus, tmp_path):
    root, ckpt, images, texts = corpus
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("build", "--images", empty, "--model", encoders.TEST_MODEL, "--pretrained", ckpt,
            "--out", tmp_path / "x.faiss")
    assert r.exit_code == 1 and "no image files" in r.output and "Traceback" not in r.output
    r = cli("build", "--images", images, "--model", encoders.TEST_MODEL, "--pretrained", tmp_path / "none.pt",
            "--out", tmp_path / "x.faiss")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert not (tmp_path / "x.faiss").exists()
