"""Edges of the public API (issue 22): merged fits, rebuilt fitted objects,
the FAISS-style search call, defaults named once, and the error classes."""
from __future__ import annotations

import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.errors import SimstdError

from conftest import unit_rows

DIM = 16


@pytest.fixture(scope="module")
def index() -> MixedIndex:
    rng = np.random.default_rng(0)
    return MixedIndex.from_arrays({"text": unit_rows(rng, 120, DIM, 2.0), "image": unit_rows(rng, 150, DIM, -2.0)},
                                  model="ViT-B-32")


def _merged(index: MixedIndex) -> Standardizer:
    a = Standardizer(method="paper", sample=60, seed=1).fit(index)
    b = Standardizer(method="paper", sample=60, seed=2).fit(index)
    return a.merge(b)


# ---------------------------------------------------------------- 1. merge
def test_merge_keeps_the_values_the_two_fits_agree_on(index):
    m = _merged(index)
    assert (m.dim_, m.model_, m.index_fingerprint_) == (DIM, "ViT-B-32", index.fingerprint)
    # a fit of scores alone records none of them: the merge does not claim one
    alone = Standardizer(method="paper").fit_scores(["text", "text"], ["image", "image"], [0.1, 0.3])
    m2 = Standardizer(method="paper", sample=60, seed=1).fit(index).merge(alone)
    assert (m2.dim_, m2.model_, m2.index_fingerprint_) == (None, None, None)


def test_merge_of_fits_of_two_versions_of_an_index_drops_the_fingerprint(index):
    a = Standardizer(method="paper", sample=60, seed=1).fit(index)
    grown = MixedIndex.from_arrays({m: index.reconstruct(index.ids(m)) for m in index.modalities}, model="ViT-B-32")
    b = Standardizer(method="paper", sample=60, seed=2).fit(grown)
    m = a.merge(b)
    assert (m.dim_, m.model_, m.index_fingerprint_) == (DIM, "ViT-B-32", None)


def test_a_merged_fit_searches_its_index(index):
    m = _merged(index)
    q = index.reconstruct(index.ids("text")[:3])
    got = index.search(q, "text", k=5, standardizer=m, strict=True)
    # the scores are the merged fit's own z-scores of the raw cosines
    np.testing.assert_allclose(got.scores, m.transform(got.raw_scores, "text", got.modalities), rtol=1e-5)


def test_a_merged_fit_saved_with_its_index_loads_and_searches(index, tmp_path):
    rng = np.random.default_rng(3)
    mine = MixedIndex.from_arrays({"text": unit_rows(rng, 80, DIM, 2.0), "image": unit_rows(rng, 90, DIM, -2.0)},
                                  model="ViT-B-32")
    mine.standardizer = _merged(mine)
    mine.save(tmp_path / "db.faiss")
    back = MixedIndex.load(tmp_path / "db.faiss")
    assert (back.standardizer.dim_, back.standardizer.model_, back.standardizer.index_fingerprint_) == \
        (DIM, "ViT-B-32", mine.fingerprint)
    back.search(back.reconstruct([0]), "text", k=3, strict=True)
    mine.standardizer.save(tmp_path / "s.json")
    alone = Standardizer.load(tmp_path / "s.json")
    assert (alone.dim_, alone.model_, alone.index_fingerprint_) == (DIM, "ViT-B-32", mine.fingerprint)


def test_merging_fits_of_other_dimensions_or_models_is_refused(index):
    rng = np.random.default_rng(4)
    a = Standardizer(method="paper", sample=60, seed=1).fit(index)
    wide = MixedIndex.from_arrays({"text": unit_rows(rng, 50, DIM * 2, 2.0), "image": unit_rows(rng, 50, DIM * 2)},
                                  model="ViT-B-32")
    with pytest.raises(SimstdError, match=rf"dimension {DIM} with a fit on dimension {DIM * 2}.*one model"):
        a.merge(Standardizer(method="paper", sample=40).fit(wide))
    other = MixedIndex.from_arrays({"text": unit_rows(rng, 50, DIM, 2.0), "image": unit_rows(rng, 50, DIM)},
                                   model="RN50")
    with pytest.raises(SimstdError, match="model 'ViT-B-32' with a fit on model 'RN50'"):
        a.merge(Standardizer(method="paper", sample=40).fit(other))


def test_merge_keeps_every_setting_of_the_fit():
    a = Standardizer(method="paper", n_pseudo=2, sample=33, seed=4, query_shift=0.5, shift_k=3,
                     hubness_k=7).fit_scores("text", "image", [0.1, 0.3])
    m = a.merge(a)
    for name in ("method", "n_pseudo", "sample", "seed", "query_shift", "shift_k", "hubness_k"):
        assert getattr(m, name) == getattr(a, name), name


# ------------------------------------------- 2. fitted objects rebuilt by hand
def _fitted(obj: object) -> dict:
    """scikit-learn's convention: fitted state is the public attributes ending in ``_``."""
    return {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}


def _same(a: object, b: object, where: str) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind == "f":  # JSON keeps var, not m2: var = m2 / n may move by an ulp
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=0, equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(b, a, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def _assert_same_fit(reference: object, rebuilt: object, *, except_: dict | None = None) -> None:
    """Every fitted attribute of ``rebuilt`` equals the reference's (or ``except_``'s expected value)."""
    ref, got = _fitted(reference), _fitted(rebuilt)
    assert sorted(got) == sorted(ref)
    for name, value in ref.items():
        _same((except_ or {}).get(name, value), got[name], name)


@pytest.fixture(scope="module")
def fits(index):
    """Reference fits of every kind on ``index``."""
    from simstd.uncertainty.model import UncertaintyModel

    paper = Standardizer(method="paper", sample=60, seed=3).fit(index)
    hub = Standardizer(method="hubness", sample=60, seed=3).fit(index)
    return {"paper": paper, "hubness": hub, "uncertainty": UncertaintyModel(sample=50).fit(index, paper)}


@pytest.mark.parametrize("name", ["paper", "hubness", "uncertainty"])
def test_a_saved_and_loaded_fit_has_every_fitted_attribute_of_the_fit(fits, name, tmp_path):
    fit = fits[name]
    fit.save(tmp_path / "fit.json")
    _assert_same_fit(fit, type(fit).load(tmp_path / "fit.json"))


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_an_index_loaded_with_its_fits_has_every_fitted_attribute(index, fits, method, tmp_path):
    """The storage layer rebuilds the fits its own way (from_dict, then the terms file)."""
    before = index.standardizer, index.uncertainty
    index.standardizer, index.uncertainty = fits[method], fits["uncertainty"]
    try:
        index.save(tmp_path / "db.faiss")
    finally:
        index.standardizer, index.uncertainty = before
    back = MixedIndex.load(tmp_path / "db.faiss")
    _assert_same_fit(fits[method], back.standardizer)
    _assert_same_fit(fits["uncertainty"], back.uncertainty)
    # the index itself: _restore sets the attributes __init__ sets, no fewer, no more
    assert sorted(vars(back)) == sorted(vars(MixedIndex(DIM)))


def test_a_fit_merged_with_itself_has_every_fitted_attribute_of_the_fit(fits):
    paper = fits["paper"]
    # pooled twice: twice the counts; the sampling errors of a pooled fit are unknown (NaN)
    _assert_same_fit(paper, paper.merge(paper), except_={"n_": 2 * paper.n_,
                                                         "standard_error_": np.full_like(paper.standard_error_,
                                                                                         np.nan)})


# ------------------------------------------------- 3. a FAISS user's search(xq, 10)
def test_the_faiss_call_search_xq_k_names_the_signature(index):
    from simstd.engines import as_searchable
    from simstd.engines.base import plan_search

    xq = index.reconstruct([0, 1])
    message = (r"search\(queries, query_modality, k\): the second argument is the modality of the queries "
               r"\(one of \['text', 'image'\]\), got 10.*search\(queries, 'text', k=10\)")
    with pytest.raises(SimstdError, match=message):
        index.search(xq, 10)
    # the vector-database adapters' search(xq, 10) checks its arguments with plan_search(self, xq, 10, 10)
    ids = np.concatenate([index.ids(m) for m in index.modalities])
    collection = as_searchable(index.reconstruct(ids), [str(x) for x in index.modality_of(ids)])
    with pytest.raises(SimstdError, match=r"search\(queries, query_modality, k\): the second argument"):
        plan_search(collection, xq, 10, 10)


def test_one_modality_index_refuses_the_faiss_order_too():
    one = MixedIndex.from_arrays({"image": unit_rows(np.random.default_rng(5), 30, DIM)})
    with pytest.raises(SimstdError, match=r"one of \['image'\]\), got 5.*search\(queries, 'image', k=5\)"):
        one.search(one.reconstruct([0]), 5, raw=True)
    assert one.search(one.reconstruct([0]), "image", 5, raw=True).ids.shape == (1, 5)


# ------------------------------------------------- 4. docs and messages match the code
def _method_messages(index: MixedIndex) -> list[str]:
    messages = []
    for call in (lambda: Standardizer(method="hubness", query_shift=0.5).fit(index),
                 lambda: Standardizer(method="hubness").fit(index, positives=np.zeros((1, 2), np.int64)),
                 lambda: Standardizer(method="hubness").fit_scores("text", "image", [0.1, 0.2])):
        with pytest.raises(SimstdError) as info:
            call()
        messages.append(str(info.value))
    return messages


@pytest.mark.parametrize("default", ["actual", "paper", "hubness"])
def test_messages_call_only_the_actual_default_method_the_default(index, default, monkeypatch):
    import inspect
    import re

    if default != "actual":  # the default is about to change: the messages must follow it
        init = Standardizer.__init__
        monkeypatch.setattr(init, "__defaults__", (default,) + init.__defaults__[1:])
    actual = inspect.signature(Standardizer).parameters["method"].default
    assert default in ("actual", actual)
    for message in _method_messages(index):
        named = re.findall(r"method='(\w+)'[^']*?\(the default\)", message)
        assert message.count("the default") == len(named) and set(named) <= {actual}, message


def test_load_docstring_states_the_verification_limit():
    from simstd.storage.layout import VERIFY_LIMIT

    size = f"{VERIFY_LIMIT >> 20} MiB"
    assert size in " ".join(MixedIndex.load.__doc__.split()) and "VERIFY_LIMIT" in MixedIndex.load.__doc__
    assert f"file up to {size}" in " ".join(open(_docs("reliability.md")).read().split())


def _docs(name: str) -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / "docs" / name)


def test_the_lock_timeout_default_is_one_constant():
    import inspect

    from simstd.cli import main
    from simstd.storage import lock

    save = inspect.signature(MixedIndex.save).parameters["lock_timeout"].default
    assert save is lock.DEFAULT_TIMEOUT  # the constant itself, not a copy of its value
    for command in ("build", "add", "fit", "rollback"):
        option = next(p for p in main.commands[command].params if p.name == "lock_timeout")
        assert option.default is lock.DEFAULT_TIMEOUT, command
    for doc in ("README.md", "docs/reliability.md"):
        assert f"default {lock.DEFAULT_TIMEOUT:g}" in " ".join(open(_docs("../" + doc)).read().split()), doc


# ------------------------------------------------------------------- 5. errors
def _package_classes() -> dict[str, list[tuple[str, list[str]]]]:
    """``{module file: [(class name, base names)]}`` of every class in simstd's source."""
    import ast
    from pathlib import Path

    import simstd

    root = Path(simstd.__file__).parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        found[str(path.relative_to(root))] = [(c.name, [ast.unparse(b) for b in c.bases]) for c in classes]
    return found


def test_errors_live_in_one_module_and_are_exported():
    import warnings

    import simstd
    from simstd import errors

    ours = {name for name, cls in vars(errors).items() if isinstance(cls, type) and cls.__module__ == errors.__name__}
    assert ours, "simstd.errors defines no class"
    for name in ours:
        cls = getattr(errors, name)
        assert issubclass(cls, (Exception, Warning))
        assert name.endswith("Warning" if issubclass(cls, Warning) else "Error"), name
        assert name in simstd.__all__ and getattr(simstd, name) is cls, name
    assert {"LockTimeoutError", "ConcurrentWriteError", "StaleFitWarning"} <= ours
    assert "UncertaintyModel" in simstd.__all__ and simstd.UncertaintyModel.__name__ == "UncertaintyModel"
    # no exception or warning class elsewhere (an HTTPException subclass is a response, not an error class)
    error_names = ours | {"Exception", "ValueError", "Warning", "UserWarning", "RuntimeError", "TypeError"}
    outside = [(module, name) for module, classes in _package_classes().items() if module != "errors.py"
               for name, bases in classes
               if any(b.split(".")[-1] in error_names or b.endswith(("Error", "Warning", "Exception")) for b in bases)
               and not any(b.endswith("HTTPException") for b in bases)]
    assert outside == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from simstd import UncertaintyModel  # noqa: F401  (the root import: no circle, no warning)


def test_importing_simstd_loads_no_scipy():
    """UncertaintyModel is exported lazily: scipy.special costs about a second to import."""
    import subprocess
    import sys

    code = "import sys, simstd; assert 'scipy.special' not in sys.modules; simstd.UncertaintyModel; " \
           "assert 'scipy.special' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_input_is_a_value_error_and_a_busy_index_is_not(tmp_path):
    import threading

    from simstd import (ConcurrentWriteError, CorruptFileError, LockTimeoutError, NotFittedError, NotFoundError,
                        SimstdBaseError)
    from simstd.storage import writer_lock

    for cls in (SimstdError, NotFittedError, CorruptFileError, NotFoundError):
        assert issubclass(cls, ValueError) and issubclass(cls, SimstdBaseError), cls
    for cls in (LockTimeoutError, ConcurrentWriteError):
        assert not issubclass(cls, ValueError) and issubclass(cls, SimstdBaseError), cls
    # a real lock timeout: another thread holds the writer lock
    path = tmp_path / "db.faiss"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with writer_lock(path):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(SimstdBaseError) as info:
            with writer_lock(path, 0):
                pass
        assert isinstance(info.value, LockTimeoutError) and not isinstance(info.value, ValueError)
    finally:
        release.set()
        thread.join()


def test_the_service_maps_every_error_class_to_its_status():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from simstd import errors
    from simstd.serve import app as serve_app

    expected = {"SimstdBaseError": 500, "SimstdError": 400, "InputDataError": 400, "UnsupportedQueryError": 400,
                "NotFoundError": 404, "NotFittedError": 409, "FingerprintMismatchError": 409,
                "ConcurrentWriteError": 409, "IndexExistsError": 409, "CorruptFileError": 503, "EncoderUnavailableError": 503,
                "WeightsUnavailableError": 503, "LockTimeoutError": 503}
    classes = {n: c for n, c in vars(errors).items()
               if isinstance(c, type) and issubclass(c, Exception) and not issubclass(c, Warning)}
    assert set(classes) == set(expected)
    app = FastAPI()
    serve_app._add_error_handlers(app)

    @app.get("/raise/{name}")
    def raise_(name: str) -> None:
        raise classes[name](f"a {name}")

    with TestClient(app, raise_server_exceptions=False) as client:
        for name, status in expected.items():
            got = client.get(f"/raise/{name}")
            assert (got.status_code, got.json()) == (status, {"detail": f"a {name}"}), name


def test_a_merged_fit_stays_the_papers_when_the_default_method_changes(monkeypatch):
    init = Standardizer.__init__
    monkeypatch.setattr(init, "__defaults__", ("hubness",) + init.__defaults__[1:])
    a = Standardizer(method="paper").fit_scores("text", "image", [0.1, 0.3])
    m = a.merge(a)
    assert m.method == "paper" and m.affine("text", "image") == pytest.approx((0.2, 0.1))
