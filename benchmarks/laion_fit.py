#!/usr/bin/env python3
"""Fit from clip-retrieval files: speed and error of the float32, bfloat16-certified, adaptive and Spark fits.

Writes a clip-retrieval folder of synthetic CLIP-like vectors (``benchmarks/synth.py``,
the data of docs/performance.md) as float16 ``img_emb_{N}.npy`` / ``text_emb_{N}.npy``,
then, in one process and alternating repeat by repeat:

- ``index``: the fit on a Flat MixedIndex of the same vectors (what ``simstd fit --index`` does);
- ``float32``: :func:`simstd.laion.fit_embeddings` streaming the files, exact float32 products;
- ``bfloat16``: the same with bfloat16 candidates re-scored in float32 and certified;
- ``auto-float32`` / ``auto-bfloat16`` / ``auto-index``: ``sample="auto"``, rounds of pseudo
  queries until every pair's mean and std has a standard error of at most ``--target-se`` of its std;
- ``hubness-index`` / ``hubness-files`` (and ``auto-hubness-*``): the corrected method
  (``method="hubness"``, per-item terms against banks of ``--hubness-bank``) on the index and from
  the files; the run records how far the files' fit is from the index's (terms, pairs, scale) and
  each fit's pseudo queries and passes.

Each fit's pair statistics are compared, in units of that pair's std, with the float32 fit of
the same pseudo queries (same seed) and, with ``--reference-sample S``, with an exact fit on S
pseudo queries per modality drawn with another seed (its own sampling error is 1/sqrt(S) std):
the error a user's fit carries against the collection's statistics. ``--error-seeds`` repeats
the adaptive bfloat16 fit with more seeds for the spread of that error. ``--spark local[2]`` adds the
Spark fit (and reads the job's bytes from Spark's REST API). Results go to
``benchmarks/results/laion_fit.json``.

    python benchmarks/laion_fit.py --n 1m --sample 10000 --repeats 3 \
        --methods float32,bfloat16,auto-float32,auto-bfloat16 --reference-sample 40000 --error-seeds 1,2,3,4
    python benchmarks/laion_fit.py --n 200k --sample 2000 --spark "local[2]" --methods float32,ivf
    python benchmarks/laion_fit.py --n 1m --methods auto-hubness-files,auto-hubness-index --target-se 0.02 \
        --key 1m-hubness
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import CHUNK, DIM, RESULTS, command, parse_size  # first: puts this checkout's simstd on sys.path
from synth import Synth

from simstd import MixedIndex, Standardizer
from simstd.laion import fit_embeddings


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


def fit_file(root: Path, name: str, args: argparse.Namespace, seed: int, report) -> Standardizer:  # noqa: ANN001
    """One fit from the files: ``float32``/``bfloat16``/``ivf`` at ``--sample``, ``auto-*`` adaptive,
    ``hubness-files`` the corrected method."""
    auto = name.startswith("auto-")
    search = name.removeprefix("auto-")
    if search == "hubness-files":
        return fit_embeddings(root, method="hubness", hubness_bank=args.hubness_bank or None,
                              sample="auto" if auto else args.sample, target_se=args.target_se, seed=seed,
                              report=report)
    return fit_embeddings(root, method="paper", sample="auto" if auto else args.sample, target_se=args.target_se,
                          seed=seed, nprobe=args.nprobe, search="exact" if search == "float32" else search,
                          report=report)


def fit_index(index: MixedIndex, name: str, args: argparse.Namespace) -> Standardizer:
    """One fit on the Flat index: ``index`` (the paper's) or ``hubness-index``, ``auto-*`` adaptive."""
    sample = "auto" if name.startswith("auto-") else args.sample
    method = "hubness" if "hubness" in name else "paper"
    return Standardizer(method=method, hubness_bank=args.hubness_bank or None, sample=sample,
                        target_se=args.target_se, seed=args.seed).fit(index)


def hubness_gap(got: Standardizer, ref: Standardizer) -> dict:
    """Largest absolute differences of two hubness fits (files vs index: equal up to float32 rounding)."""
    out = {"terms": float(np.abs(got.terms_ - ref.terms_).max()), "n_equal": bool((got.n_ == ref.n_).all())}
    for name in ("mean_", "std_", "scale_"):
        out[name.rstrip("_")] = float(np.nanmax(np.abs(getattr(got, name) - getattr(ref, name))))
    return out


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
    p.add_argument("--target-se", type=float, default=0.02, help="precision of the auto-* fits")
    p.add_argument("--reference-sample", type=int, default=0,
                   help="also fit exactly on this many pseudo queries per modality (seed 1000) as the reference")
    p.add_argument("--error-seeds", default="", help="more seeds of the auto-bfloat16 fit, for its error's spread")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--hubness-bank", type=int, default=Standardizer().hubness_bank,
                   help="hubness_bank of the hubness fits (0 = every item, exact)")
    p.add_argument("--piece-rows", type=int, default=65_536, help="rows per task (piece)")
    p.add_argument("--spark", default=None, help="also fit on Spark with this master, e.g. local[2]")
    p.add_argument("--out", default=str(RESULTS / "laion_fit.json"))
    p.add_argument("--key", default=None, help="key of this run in --out (default: N-SAMPLE[-spark])")
    args = p.parse_args()
    n = parse_size(args.n)
    root = Path(args.dir) / f"n{n}"
    t = time.perf_counter()
    write_folder(root, n, args.seed)
    print(f"folder {root}: {time.perf_counter() - t:.1f} s", flush=True)
    index = None
    if any(name.endswith("index") for name in args.methods.split(",")):
        index = MixedIndex.from_arrays(stored(root), factory="Flat")
    methods = args.methods.split(",")
    runs: dict[str, list] = {name: [] for name in methods}
    cpu_runs: dict[str, list] = {name: [] for name in methods}  # CPU seconds of this process: less load-bound
    fits: dict[str, Standardizer] = {}
    reports: dict[str, list] = {name: [] for name in methods}
    loads: dict[str, list] = {name: [] for name in methods}  # 1-minute load average after each fit
    for r in range(args.repeats):
        for name in methods:
            t, cpu = time.perf_counter(), time.process_time()
            if name.endswith("index"):
                fits[name] = fit_index(index, name, args)
            else:
                fits[name] = fit_file(root, name, args, args.seed, reports[name].append)
            runs[name].append(time.perf_counter() - t)
            cpu_runs[name].append(time.process_time() - cpu)
            loads[name].append(os.getloadavg()[0])
            print(f"repeat {r} {name}: {runs[name][-1]:.1f} s wall, {cpu_runs[name][-1]:.1f} s CPU "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    # exact float32 fits of the same queries: the paper's from files or on the index, else a hubness fit's
    ref_name = next(n for n in ("float32", "index", *fits) if n in fits)
    ref = fits[ref_name]
    collection = {}
    if args.reference_sample:
        t = time.perf_counter()
        cached = root / f"reference-{args.reference_sample}-seed1000.json"  # the folder's own statistics
        if cached.exists():
            big = Standardizer.load(cached)
        else:
            big = fit_embeddings(root, sample=args.reference_sample, seed=1000, search="bfloat16")  # certified exact
            big.save(cached)
        print(f"reference ({args.reference_sample} per modality): {time.perf_counter() - t:.1f} s", flush=True)
        collection = {"reference_sample": args.reference_sample, "reference_seed": 1000,
                      "reference_own_se": args.reference_sample ** -0.5,
                      "error_vs_reference": {k: errors(v, big) for k, v in fits.items()}}
        spread = []
        for s in [int(x) for x in args.error_seeds.split(",") if x]:
            rep: list = []
            fit = fit_file(root, "auto-bfloat16", args, s, rep.append)
            spread.append({"seed": s, "sample": rep[0].sample, **errors(fit, big),
                           "predicted_se": max(max(e["mean"], e["std"]) for e in rep[0].extra["standard_error"].values())})
            print(f"auto-bfloat16 seed {s}: {spread[-1]}", flush=True)
        collection["auto_bfloat16_seeds"] = spread
    result = {
        "command": command("laion_fit.py", sys.argv[1:]),
        "load_average_after": os.getloadavg(),
        "n": n, "sample": args.sample, "seed": args.seed, "repeats": args.repeats,
        "seconds": {k: v for k, v in runs.items() if v},
        "median_seconds": {k: float(np.median(v)) for k, v in runs.items() if v},
        "cpu_seconds": {k: v for k, v in cpu_runs.items() if v},
        "cores": os.cpu_count(),
        "reference": ref_name,
        "ratios_reference_over": {k: float(np.median(np.array(runs[ref_name]) / np.array(v)))
                                  for k, v in runs.items() if v},
        "reports": {name: [{"sample": rep.sample, "seconds": rep.seconds, **rep.extra} for rep in reps]
                    for name, reps in reports.items() if reps},
        "error_vs_reference": {k: errors(v, ref) for k, v in fits.items()
                               if k != ref_name and v.method == ref.method},
        "load_average_per_repeat": {k: v for k, v in loads.items() if v},
        "hubness_bank": args.hubness_bank,
        "hubness_files_vs_index": {f"{a} vs {a.replace('files', 'index')}": hubness_gap(fits[a], fits[a.replace("files", "index")])
                                   for a in fits if a.endswith("hubness-files") and a.replace("files", "index") in fits},
        "stated_se": {k: float(np.nanmax(v.standard_error_)) for k, v in fits.items()},
        "collection": collection,
        "pairs": ref.table(),
    }
    if args.spark:
        from simstd.spark import SparkRunner

        runner = SparkRunner(args.spark)
        spark = runner.spark
        rep: list = []
        t = time.perf_counter()
        std = fit_embeddings(root, sample=args.sample, seed=args.seed, runner=runner, report=rep.append,
                             piece_rows=args.piece_rows)
        elapsed = time.perf_counter() - t
        t = time.perf_counter()
        same = fit_embeddings(root, sample=args.sample, seed=args.seed, piece_rows=args.piece_rows)
        local = time.perf_counter() - t
        from pyspark import cloudpickle

        from simstd.laion.topk import PseudoQueries
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
        runner.close()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.key or f"{args.n}-{args.sample}" + ("-spark" if args.spark else "")] = result
    out.write_text(json.dumps(data, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}, indent=2))


if __name__ == "__main__":
    main()
