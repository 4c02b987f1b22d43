"""OpenClipEncoder end to end on a real open_clip architecture with random
weights (no download). Needs the `clip` extra; skipped without it."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

encoders = pytest.importorskip("simstd.encoders")
try:
    # Not a bare importorskip("open_clip"): beside a CPU-only torch, PyPI's
    # torchvision raises RuntimeError (not ImportError) on import, which
    # simstd.encoders works around; this also covers a missing extra.
    encoders._import_clip_stack()
except encoders.EncoderUnavailableError as exc:  # pragma: no cover - depends on env
    pytest.skip(f"clip extra not usable: {exc}", allow_module_level=True)
open_clip = pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402  (pillow comes with the extra)

from simstd.encoders import (  # noqa: E402
    TEST_MODEL,
    Encoder,
    EncoderUnavailableError,
    InputDataError,
    OpenClipEncoder,
    WeightsUnavailableError,
    encode_image_files,
    load_encoder,
    save_random_checkpoint,
)

TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "a red car on a street",
    "",  # empty string still embeds (read_texts is where blanks are filtered)
    "ein Foto einer Katze",
    "a very long caption " * 40,  # longer than the context: truncated, not an error
    "sunset over the sea",
    "a bowl of fruit",
    "x",
]


# --------------------------------------------------------------------------- #
# fixtures (session scoped: creating a model costs ~0.5 s, saving one ~0.7 s)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Run torch on one thread: with the other core busy (another suite, a
    benchmark), two OpenMP threads spin-wait and this file went from ~16 s
    to ~75 s on the 2-core machine; on an idle one the cost is small."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return save_random_checkpoint(TEST_MODEL, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", seed=0)


@pytest.fixture(scope="session")
def encoder(checkpoint) -> OpenClipEncoder:
    # batch_size 4 so the inputs below span several batches
    return OpenClipEncoder(TEST_MODEL, str(checkpoint), batch_size=4)


@pytest.fixture(scope="session")
def reference(encoder, image_files) -> dict:
    """Embeddings of the session encoder, computed once, to compare others with."""
    return {"texts": encoder.encode_texts(TEXTS), "images": encoder.encode_images(image_files)}


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, fmt, size) in enumerate([
        ("RGB", "JPEG", (64, 48)),
        ("RGB", "PNG", (224, 224)),
        ("RGBA", "PNG", (30, 90)),
        ("L", "PNG", (100, 20)),
        ("P", "GIF", (33, 33)),
        ("RGB", "JPEG", (300, 200)),
    ]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(pixels).convert(mode)
        path = root / f"img{i}.{fmt.lower()}"
        img.save(path, format=fmt)
        paths.append(path)
    return paths


def _corrupt_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim)
    assert x.dtype == np.float32
    assert x.flags["C_CONTIGUOUS"]
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- #
# encoding
# --------------------------------------------------------------------------- #
def test_encoder_identity(encoder, checkpoint):
    assert isinstance(encoder, Encoder)
    assert encoder.dim == 256
    assert encoder.name == f"open_clip:{TEST_MODEL}:{checkpoint.resolve()}"
    assert "dim=256" in repr(encoder)


def test_encode_texts(encoder, reference):
    x = reference["texts"]
    _assert_unit_rows(x, len(TEXTS), encoder.dim)
    # a working model tells different inputs apart
    assert len({row.tobytes() for row in x}) == len(TEXTS)
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS), x)  # deterministic
    np.testing.assert_allclose(encoder.encode_texts(TEXTS[2:3])[0], x[2], atol=1e-5)  # batch-independent


def test_encode_images_from_pil_and_paths(encoder, image_files, reference):
    x = reference["images"]  # from Path objects
    _assert_unit_rows(x, len(image_files), encoder.dim)
    assert len({row.tobytes() for row in x}) == len(image_files)
    pil = [Image.open(p) for p in image_files]
    np.testing.assert_allclose(encoder.encode_images(pil), x, atol=1e-6)
    np.testing.assert_array_equal(encoder.encode_images([str(p) for p in image_files]), x)


def test_empty_and_wrong_inputs(encoder, image_files):
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_images([]).shape == (0, encoder.dim)
    assert encoder.encode_texts([]).dtype == np.float32
    with pytest.raises(TypeError):
        encoder.encode_texts("a single string")
    with pytest.raises(TypeError):
        encoder.encode_texts(["ok", 3])
    with pytest.raises(TypeError):
        encoder.encode_images(str(image_files[0]))
    with pytest.raises(TypeError):
        encoder.encode_images([42])


def test_load_encoder_roundtrip(encoder, image_files, reference):
    rebuilt = load_encoder(encoder.name, batch_size=4)
    assert rebuilt.name == encoder.name and rebuilt.dim == encoder.dim
    np.testing.assert_array_equal(rebuilt.encode_texts(TEXTS), reference["texts"])
    np.testing.assert_array_equal(rebuilt.encode_images(image_files), reference["images"])


def test_encoder_for_index(encoder, reference):
    from types import SimpleNamespace

    rebuilt = encoders.encoder_for_index(SimpleNamespace(model=encoder.name))
    np.testing.assert_array_equal(rebuilt.encode_texts(TEXTS[:4]), reference["texts"][:4])


def test_pt_checkpoint_with_same_seed_matches(reference, tmp_path):
    pt = save_random_checkpoint(TEST_MODEL, tmp_path / "tiny.pt", seed=0)
    other = OpenClipEncoder(TEST_MODEL, str(pt), batch_size=4)
    np.testing.assert_array_equal(other.encode_texts(TEXTS[:4]), reference["texts"][:4])


def test_random_weights_are_seeded_and_round_trip():
    enc = OpenClipEncoder(TEST_MODEL, None)
    assert enc.name == f"open_clip:{TEST_MODEL}:random"
    again = load_encoder(enc.name)
    np.testing.assert_array_equal(enc.encode_texts(TEXTS[:3]), again.encode_texts(TEXTS[:3]))


# --------------------------------------------------------------------------- #
# bad images
# --------------------------------------------------------------------------- #
def test_encode_image_files_skips_and_reports_corrupt(encoder, image_files, reference, tmp_path):
    bad = _corrupt_jpeg(tmp_path / "broken.jpg")
    paths = [image_files[0], bad, *image_files[1:3]]
    result = encode_image_files(encoder, paths, chunk_size=2)
    assert result.paths == [image_files[0], *image_files[1:3]]
    assert [p for p, _ in result.failures] == [bad]
    assert "truncated" in result.failures[0][1].lower()
    _assert_unit_rows(result.embeddings, 3, encoder.dim)
    expected = reference["images"][[0, 1, 2]]
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-6)


def test_encode_image_files_all_bad(encoder, tmp_path):
    bad = _corrupt_jpeg(tmp_path / "broken.jpg")
    result = encode_image_files(encoder, [bad, tmp_path / "missing.png"])
    assert result.embeddings.shape == (0, encoder.dim) and result.paths == []
    assert len(result.failures) == 2


def test_encode_images_with_corrupt_path_names_the_file(encoder, tmp_path):
    bad = _corrupt_jpeg(tmp_path / "broken.jpg")
    with pytest.raises(InputDataError, match="broken.jpg"):
        encoder.encode_images([bad])


# --------------------------------------------------------------------------- #
# bad models / weights
# --------------------------------------------------------------------------- #
def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        OpenClipEncoder(TEST_MODEL, str(tmp_path / "nope.safetensors"))


def test_unknown_tag_lists_known_tags():
    with pytest.raises(EncoderUnavailableError, match="known tags") as info:
        OpenClipEncoder("ViT-B-32", "no-such-tag")
    assert "laion2b_s34b_b79k" in str(info.value)
    assert "--pretrained" in str(info.value)


def test_unknown_model_suggests_names():
    with pytest.raises(EncoderUnavailableError, match="ViT-S-32"):
        OpenClipEncoder("ViT-S-32-alternative", None)
    with pytest.raises(EncoderUnavailableError, match="built-in"):
        OpenClipEncoder("hf-hub:org/repo", None)


def test_bad_arguments(checkpoint):
    with pytest.raises(ValueError, match="batch_size"):
        OpenClipEncoder(TEST_MODEL, str(checkpoint), batch_size=0)
    with pytest.raises(EncoderUnavailableError, match="device"):
        OpenClipEncoder(TEST_MODEL, str(checkpoint), device="not-a-device")


def test_checkpoint_of_other_architecture(checkpoint):
    with pytest.raises(EncoderUnavailableError, match="does not fit"):
        OpenClipEncoder("ViT-S-32", str(checkpoint))


# --------------------------------------------------------------------------- #
# offline behaviour
# --------------------------------------------------------------------------- #
@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """Point huggingface_hub at an empty cache, so a developer's cached
    weights cannot hide the offline error."""
    constants = pytest.importorskip("huggingface_hub.constants")
    if not hasattr(constants, "HF_HUB_CACHE"):  # pragma: no cover
        pytest.skip("huggingface_hub without HF_HUB_CACHE")
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_offline_tag_error_is_clear_and_fast(monkeypatch, empty_hub_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        OpenClipEncoder("ViT-B-32", "laion2b_s34b_b79k")
    assert time.monotonic() - start < 10
    err = info.value
    assert isinstance(err, EncoderUnavailableError) and isinstance(err, ValueError)
    message = str(err)
    assert "offline" in message and "HF_HUB_OFFLINE" in message
    assert "--pretrained /path/to/weights.safetensors" in message
    assert "laion2b_s34b_b79k" in message
    assert err.__cause__ is None and err.__suppress_context__  # no chained traceback


def test_unreachable_hub_error_is_clear_and_fast(monkeypatch, empty_hub_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    # Loopback discard port: refused at once, no traffic leaves the machine.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="unreachable") as info:
        load_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k")
    assert time.monotonic() - start < 10
    assert "--pretrained" in str(info.value)


def test_cached_tag_loads_offline(monkeypatch, empty_hub_cache, checkpoint, reference):
    """A tag whose weights sit in the hub cache loads with HF_HUB_OFFLINE=1."""
    pretrained = pytest.importorskip("open_clip.pretrained")
    monkeypatch.setitem(
        pretrained._PRETRAINED, TEST_MODEL,
        {"simstdtest": {"hf_hub": "simstd-test/tiny-clip/", "url": ""}},
    )
    commit = "0" * 40
    repo_dir = empty_hub_cache / "models--simstd-test--tiny-clip"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copyfile(checkpoint, snapshot / "open_clip_model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    cached = OpenClipEncoder(TEST_MODEL, "simstdtest", batch_size=4)
    assert cached.name == f"open_clip:{TEST_MODEL}:simstdtest"
    np.testing.assert_array_equal(cached.encode_texts(TEXTS[:4]), reference["texts"][:4])


def test_torchvision_transforms_usable_after_import():
    from torchvision import transforms

    out = transforms.Compose([transforms.Resize(8), transforms.CenterCrop(8), transforms.ToTensor()])(
        Image.new("RGB", (20, 10))
    )
    assert tuple(out.shape) == (3, 8, 8)
