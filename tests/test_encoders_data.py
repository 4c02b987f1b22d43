"""simstd.encoders parts that need no `clip` extra: raw-data helpers, name
parsing, lazy imports and the missing-extra error. Runs in the core suite."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simstd import encoders
from simstd.encoders import (
    EncoderUnavailableError,
    InputDataError,
    iter_image_files,
    load_encoder,
    read_texts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- #
# lazy imports / missing extra
# --------------------------------------------------------------------------- #
def test_import_does_not_load_the_clip_stack():
    code = (
        "import sys, simstd.encoders\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'open_clip', 'PIL') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("missing", ["torch", "open_clip"])
def test_missing_extra_gives_install_hint(monkeypatch, missing):
    # None in sys.modules makes `import missing` raise ImportError.
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(EncoderUnavailableError) as info:
        encoders.OpenClipEncoder("ViT-S-32-alt", None)
    assert isinstance(info.value, ValueError)
    assert 'pip install "simstd[clip]"' in str(info.value)
    with pytest.raises(EncoderUnavailableError, match=r"simstd\[clip\]"):
        encoders.save_random_checkpoint("ViT-S-32-alt", "/nonexistent/x.safetensors")


def test_errors_are_simstd_errors():
    # The CLI prints SimstdError messages without a traceback.
    from simstd.errors import SimstdError

    for cls in (EncoderUnavailableError, encoders.WeightsUnavailableError, InputDataError):
        assert issubclass(cls, SimstdError) and issubclass(cls, ValueError)


def test_encoder_for_index_without_model():
    from types import SimpleNamespace

    with pytest.raises(EncoderUnavailableError, match="records no encoder"):
        encoders.encoder_for_index(SimpleNamespace(model=None))


@pytest.mark.parametrize(
    "name",
    ["", "open_clip", "open_clip:", "open_clip:ViT-S-32-alt", "open_clip:ViT-S-32-alt:",
     "open_clip::laion2b", "sentence-transformers:all-MiniLM:x", "ViT-B-32"],
)
def test_load_encoder_rejects_malformed_names(name):
    with pytest.raises(EncoderUnavailableError, match="encoder name"):
        load_encoder(name)


# --------------------------------------------------------------------------- #
# iter_image_files
# --------------------------------------------------------------------------- #
def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_iter_image_files_recursive_sorted_filtered(tmp_path):
    for rel in ["b/2.PNG", "a/z.jpg", "a/sub/1.webp", "c.JPEG", "d.tiff", "e.tif",
                "f.bmp", "g.gif", "notes.txt", "a/readme.md", ".hidden.jpg",
                ".cache/x.png", "a/._fork.jpg"]:
        _touch(tmp_path / rel)
    (tmp_path / "dir.jpg").mkdir()  # a directory named like an image is no file
    found = iter_image_files(tmp_path)
    rels = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rels == ["a/sub/1.webp", "a/z.jpg", "b/2.PNG", "c.JPEG", "d.tiff", "e.tif", "f.bmp", "g.gif"]
    assert iter_image_files(str(tmp_path)) == found  # str accepted, same order


def test_iter_image_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        iter_image_files(tmp_path / "missing")
    file = _touch(tmp_path / "one.jpg")
    with pytest.raises(NotADirectoryError):
        iter_image_files(file)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputDataError, match="no image files") as info:
        iter_image_files(empty)
    assert str(empty) in str(info.value)
    _touch(empty / "only.txt")
    with pytest.raises(InputDataError):
        iter_image_files(empty)


# --------------------------------------------------------------------------- #
# load_images (pillow only)
# --------------------------------------------------------------------------- #
def _jpeg_bytes(size=(40, 30), seed=0) -> bytes:
    Image = pytest.importorskip("PIL.Image")
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_load_images_reports_bad_files_and_converts_rgb(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    good_jpg = _touch(tmp_path / "good.jpg", _jpeg_bytes())
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 6), (255, 0, 0, 128)).save(rgba)
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 5), 7).save(gray)
    palette = tmp_path / "pal.gif"
    Image.new("P", (4, 4), 3).save(palette)
    full = _jpeg_bytes(size=(64, 64), seed=1)
    truncated = _touch(tmp_path / "truncated.jpg", full[: len(full) // 2])
    garbage = _touch(tmp_path / "garbage.png", b"this is not an image at all")
    empty = _touch(tmp_path / "empty.jpg", b"")
    missing = tmp_path / "missing.jpg"

    paths = [good_jpg, truncated, rgba, garbage, gray, empty, palette, missing]
    images, good, failures = encoders.load_images(paths)

    assert good == [good_jpg, rgba, gray, palette]
    assert [im.mode for im in images] == ["RGB"] * 4
    assert [im.size for im in images] == [(40, 30), (8, 6), (5, 5), (4, 4)]
    failed = dict(failures)
    assert list(failed) == [truncated, garbage, empty, missing]
    assert "truncated" in failed[truncated].lower()
    assert failed[missing] == "file not found"
    assert all(reason for reason in failed.values())


def test_load_images_empty_input():
    pytest.importorskip("PIL")
    result = encoders.load_images([])
    assert result.images == [] and result.paths == [] and result.failures == []


# --------------------------------------------------------------------------- #
# read_texts
# --------------------------------------------------------------------------- #
def test_read_texts_plain_reports_empty_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufefffirst\r\n\r\n  second item  \n   \n\tthird\n\n".encode("utf-8"))
    texts, lines, skipped = read_texts(path)
    assert texts == ["first", "second item", "third"]
    assert lines == [1, 3, 5]
    assert skipped == [(2, "empty line"), (4, "empty line"), (6, "empty line")]


def test_read_texts_plain_keeps_json_looking_lines_verbatim(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text('{"text": "not parsed"}\nplain\n', encoding="utf-8")
    assert read_texts(path).texts == ['{"text": "not parsed"}', "plain"]


def test_read_texts_jsonl(tmp_path):
    rows = [
        json.dumps({"text": "a cat", "id": 1}),
        "",
        "{not json",
        json.dumps({"caption": "no text field"}),
        json.dumps({"text": 42}),
        json.dumps({"text": "   "}),
        json.dumps(["a", "list"]),
        json.dumps({"text": " a dog "}),
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    records = read_texts(path)
    assert records.texts == ["a cat", "a dog"]
    assert records.line_numbers == [1, 8]
    reasons = dict(records.skipped)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert reasons[2] == "empty line"
    assert reasons[3].startswith("invalid JSON")
    assert reasons[4] == "missing field 'text'"
    assert "int" in reasons[5]
    assert reasons[6] == "empty 'text'"
    assert "not a JSON object" in reasons[7]


def test_read_texts_jsonl_custom_field(tmp_path):
    path = tmp_path / "data.ndjson"
    path.write_text('{"caption": "x"}\n{"caption": "y"}\n', encoding="utf-8")
    assert read_texts(path, field="caption").texts == ["x", "y"]
    with pytest.raises(InputDataError, match="missing field 'text'"):
        read_texts(path)  # wrong field everywhere: nothing to embed, reason shown


def test_read_texts_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_texts(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError):
        read_texts(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputDataError, match="empty"):
        read_texts(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="no text"):
        read_texts(blank)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputDataError, match="UTF-8"):
        read_texts(latin1)
