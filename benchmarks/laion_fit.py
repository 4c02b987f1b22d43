#!/usr/bin/env python3
"""Fit from clip-retrieval files: speed and error of the float32, bfloat16-certified and Spark fits.

Writes a clip-retrieval folder of synthetic CLIP-like vectors (``benchmarks/synth.py``,
the data of docs/performance.md) as float16 ``img_emb_{N}.npy`` / ``text_emb_{N}.npy``,
then, in one process and alternating repeat by repeat:

- ``index``: the fit on a Flat MixedIndex of the same vectors (what ``simstd fit --index`` does);
- ``float32``: :func:`simstd.laion.fit_embeddings` streaming the files, exact float32 products;
- ``bfloat16``: the same with bfloat16 candidates re-scored in float32 and certified.

Each fit's pair statistics are compared with the float32 fit of the same pseudo
queries (same seed), in units of that pair's std. ``--spark local[2]`` adds the
Spark fit (and reads the job's bytes from Spark's REST API). Results go to
``benchmarks/results/laion_fit.json``.

    python benchmarks/laion_fit.py --n 1m --sample 10000 --repeats 1
    python benchmarks/laion_fit.py --n 200k --sample 2000 --spark "local[2]" --methods float32,ivf
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from synth import Synth  # noqa: E402

from simstd import MixedIndex, Standardizer  # noqa: E402
from simstd.laion import fit_embeddings  # noqa: E402

DIM = 512
CHUNK = 250_000


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


def write_folder(root: Path, n: int, seed: int) -> None:
    """Half image, half text, in partitions of CHUNK rows per modality, float16 (clip-retrieval's layout)."""
    if (root / "done.json").exists() and json.loads((root / "done.json").read_text()) == {"n": n, "seed": seed}:
        return
    shutil.rmtree(root, ignore_errors=True)
    (root / "img_emb").mkdir(parents=True)
    (root / "text_emb").mkdir()
    synth = Synth(DIM, seed)
    parts: dict[str, int] = {"image": 0, "text": 0}
    for m, i, size in synth.chunks(n, CHUNK):
        x = synth.chunk(m, i, size).astype(np.float16)
        sub, stem = ("img_emb", "img_emb") if m == "image" else ("text_emb", "text_emb")
        np.save(root / sub / f"{stem}_{parts[m]:03d}.npy", x)
        parts[m] += 1
    (root / "done.json").write_text(json.dumps({"n": n, "seed": seed}))


def stored(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for m, sub in (("image", "img_emb"), ("text", "text_emb")):
        out[m] = np.concatenate([np.load(p).astype(np.float32) for p in sorted((root / sub).glob("*.npy"))])
    return out


def errors(std: Standardizer, ref: Standardizer) -> dict:
    """Largest |Δ mean| / std and |Δ std| / std over the pairs."""
    return {"mean_shift_over_std": float(np.max(np.abs(std.mean_ - ref.mean_) / ref.std_)),
            "std_rel_error": float(np.max(np.abs(std.std_ - ref.std_) / ref.std_))}


def spark_metrics(spark, app_id: str) -> dict:  # noqa: ANN001
    """Bytes and task counts of the fit's jobs, from Spark's own REST API (the UI server)."""
    url = spark.sparkContext.uiWebUrl
    if not url:
        return {}
    stages = json.load(urllib.request.urlopen(f"{url}/api/v1/applications/{app_id}/stages?details=true"))
    out = {"stages": []}
    for st in stages:
        tasks = list((st.get("tasks") or {}).values())
        out["stages"].append({
            "name": st["name"], "tasks": st["numTasks"],
            "shuffle_write_bytes": st.get("shuffleWriteBytes", 0), "shuffle_read_bytes": st.get("shuffleReadBytes", 0),
            "input_bytes": st.get("inputBytes", 0),
            "result_bytes_per_task": [t.get("taskMetrics", {}).get("resultSize", 0) for t in tasks],
            "run_seconds_per_task": [t.get("taskMetrics", {}).get("executorRunTime", 0) / 1000 for t in tasks],
        })
    env = json.load(urllib.request.urlopen(f"{url}/api/v1/applications/{app_id}/environment"))
    out["java"] = env.get("runtime", {}).get("javaVersion")
    out["spark"] = spark.version
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default="200k", help="items in all (half per modality)")
    p.add_argument("--sample", type=int, default=10_000, help="pseudo queries per modality")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--dir", default="/tmp/simstd-laion-bench", help="where the clip-retrieval folder is written")
    p.add_argument("--methods", default="float32,ivf,bfloat16,index", help="fits to time, in this order per repeat")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--piece-rows", type=int, default=65_536, help="rows per task (piece)")
    p.add_argument("--spark", default=None, help="also fit on Spark with this master, e.g. local[2]")
    p.add_argument("--out", default=str(HERE / "results" / "laion_fit.json"))
    args = p.parse_args()
    n = parse_size(args.n)
    root = Path(args.dir) / f"n{n}"
    t = time.perf_counter()
    write_folder(root, n, args.seed)
    print(f"folder {root}: {time.perf_counter() - t:.1f} s", flush=True)
    index = None
    if "index" in args.methods.split(","):
        index = MixedIndex.from_arrays(stored(root), factory="Flat")
    runs: dict[str, list] = {"index": [], "float32": [], "bfloat16": [], "ivf": []}
    fits: dict[str, Standardizer] = {}
    reports: dict[str, list] = {"float32": [], "bfloat16": [], "ivf": []}
    for r in range(args.repeats):
        for name in args.methods.split(","):
            if name == "index" and index is None:
                continue
            t = time.perf_counter()
            if name == "index":
                fits[name] = Standardizer(sample=args.sample, seed=args.seed).fit(index)
            else:
                fits[name] = fit_embeddings(root, sample=args.sample, seed=args.seed, nprobe=args.nprobe,
                                            search="exact" if name == "float32" else name,
                                            report=reports[name].append)
            runs[name].append(time.perf_counter() - t)
            print(f"repeat {r} {name}: {runs[name][-1]:.1f} s", flush=True)
    ref_name = "float32" if "float32" in fits else "index"  # both are exact float32 fits of the same queries
    ref = fits[ref_name]
    result = {
        "n": n, "sample": args.sample, "seed": args.seed, "repeats": args.repeats,
        "seconds": {k: v for k, v in runs.items() if v},
        "median_seconds": {k: float(np.median(v)) for k, v in runs.items() if v},
        "reference": ref_name,
        "ratios_reference_over": {k: float(np.median(np.array(runs[ref_name]) / np.array(v)))
                                  for k, v in runs.items() if v},
        "bfloat16_recomputed": [rep.extra.get("recomputed") for rep in reports["bfloat16"]],
        "ivf": [{k: v for k, v in rep.extra.items()} for rep in reports["ivf"]],
        "error_vs_reference": {k: errors(v, ref) for k, v in fits.items() if k != ref_name},
        "pairs": ref.table(),
    }
    if args.spark:
        from simstd.spark.fit import session

        spark, _ = session(args.spark)
        rep: list = []
        t = time.perf_counter()
        std = fit_embeddings(root, sample=args.sample, seed=args.seed, spark=spark, report=rep.append,
                             piece_rows=args.piece_rows)
        elapsed = time.perf_counter() - t
        t = time.perf_counter()
        same = fit_embeddings(root, sample=args.sample, seed=args.seed, piece_rows=args.piece_rows)
        local = time.perf_counter() - t
        from pyspark import cloudpickle

        from simstd.laion.fit import PseudoQueries
        from simstd.laion.reader import ClipRetrievalFolder

        files = ClipRetrievalFolder(root)
        queries = PseudoQueries.draw(files, args.sample, args.seed)
        pieces = files.pieces(args.piece_rows)
        result["spark"] = {
            "master": args.spark, "seconds": elapsed, "local_seconds_same_run": local,
            "pieces": rep[0].pieces, "piece_rows": args.piece_rows, "broadcast_bytes_raw": rep[0].query_bytes,
            "broadcast_bytes_pickled": len(cloudpickle.dumps(queries)),
            "task_bytes_pickled": {"files (in every task's closure)": len(cloudpickle.dumps(files)),
                                   "one piece (the task's partition)": len(cloudpickle.dumps([pieces[0]]))},
            "max_abs_diff_vs_local_same_pieces": {"mean": float(np.abs(std.mean_ - same.mean_).max()),
                                                  "std": float(np.abs(std.std_ - same.std_).max())},
            "error_vs_reference": errors(std, ref),
            "max_abs_diff": {"mean": float(np.abs(std.mean_ - ref.mean_).max()),
                             "std": float(np.abs(std.std_ - ref.std_).max())},
            **spark_metrics(spark, rep[0].extra["app_id"]),
        }
        spark.stop()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[f"{args.n}-{args.sample}" + ("-spark" if args.spark else "")] = result
    out.write_text(json.dumps(data, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}, indent=2))


if __name__ == "__main__":
    main()
