"""Scale benchmark: N clip rows written to disk in bounded memory, IVF-PQ, latency and recall.

Vectors are the clustered surrogate of `bench.bench_search` (real MiniLM embeddings of distinct
miniature-world captions, each row one of them plus noise tuned to the measured paraphrase
cosine), so IVF-PQ sees tight clusters of near-duplicates as in a real caption library rather than
uniform noise. Rows are generated and appended in groups (`--group` rows per commit), so the
writer's memory does not grow with N; the resident set size after each group is recorded to show
it. Index build throughput is reported per worker: rows per second of the one process building
the index, and per CPU core it had. Recall@10 is measured against exact cosine top-10 computed
in numpy over the regenerated rows.

Run: python -m bench.bench_scale [--rows 10000000] [--data-dir /tmp/story-bench-scale]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from bench.bench_search import (
    BATCH,
    caption_source,
    dir_size_mib,
    exact_top10,
    noise_sigma,
    peak_rss_mib,
    recall_at_10,
    record_batches,
    summarise,
    time_queries,
)
from story.tasks.library.index import ClipIndex, clip_schema, ivf_pq_config
from story.tasks.library.search import default_nprobes

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
SETTINGS = [(20, 40, 10), (40, 80, 10), (80, 80, 10)]
PRODUCT_POOL = 50  # story.tasks.library.search asks for max(4k, 50) rows, refine factor 20


def rss_mib() -> float:
    """Current resident set size of this process."""
    return psutil.Process().memory_info().rss / 2**20


def _embed_to_file(captions: int, queries: int, seed: int, out: str) -> None:
    """Child process: embed captions and held-out paraphrases with MiniLM, save them to `out`."""
    import torch

    from story.models.text_encoder import load_text_encoder

    torch.set_num_threads(2)
    encoder = load_text_encoder("minilm", device="cpu")
    _, texts, paraphrases = caption_source(captions, seed)
    base = encoder.embed_sentences(texts).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(len(texts), queries, replace=False)
    query_vectors = encoder.embed_sentences([paraphrases[i] for i in picked]).astype(np.float32)
    para = encoder.embed_sentences([paraphrases[i] for i in range(min(500, len(texts)))])
    cos = float(np.median(np.sum(base[: len(para)] * para, axis=1)))
    np.savez(out, base=base, queries=query_vectors, cos=cos, texts=np.array(texts))


def surrogate_base(
    captions: int, queries: int, seed: int, work: Path
) -> tuple[np.ndarray, list[str], np.ndarray, float]:
    """Caption vectors, captions, query vectors, paraphrase cosine; torch stays out of this process.

    The embedding runs in a spawned child so the resident memory measured here is the writer's,
    index builder's and searcher's alone.
    """
    out = work / "surrogate.npz"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_embed_to_file, args=(captions, queries, seed, str(out)))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"caption embedding failed with exit code {child.exitcode}")
    with np.load(out) as data:
        return data["base"], data["texts"].tolist(), data["queries"], float(data["cos"])


def write_rows(
    data_dir: Path,
    base: np.ndarray,
    texts: list[str],
    rows: int,
    sigma: float,
    seed: int,
    group: int,
) -> dict:
    """Append the rows in groups of `group`, one commit each; time and memory per group."""
    import lancedb

    db = lancedb.connect(str(data_dir))
    schema = clip_schema(base.shape[1])
    batches = record_batches(base, texts, rows, sigma, seed)
    per_group = max(1, group // BATCH)
    table = None
    samples = []
    t_all = time.perf_counter()
    written = 0
    while True:
        chunk = list(islice(batches, per_group))
        if not chunk:
            break
        reader = pa.RecordBatchReader.from_batches(schema, iter(chunk))
        t0 = time.perf_counter()
        if table is None:
            table = db.create_table("clips", data=reader, schema=schema)
        else:
            table.add(reader)
        written += sum(b.num_rows for b in chunk)
        del chunk, reader
        samples.append(
            {"rows": written, "seconds": round(time.perf_counter() - t0, 2), "rss_mib": rss_mib()}
        )
        print("wrote", samples[-1], flush=True)
    seconds = time.perf_counter() - t_all
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "groups": len(samples),
        "rss_mib_per_group": [round(s["rss_mib"], 1) for s in samples],
        "table_mib": round(dir_size_mib(data_dir / "clips.lance"), 1),
    }


def _forward_cost(model, inputs: dict, repeats: int) -> dict:
    """FLOPs of one forward pass (torch's counter) and its CPU wall time, median of `repeats`."""
    import statistics

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**inputs)
            seconds.append(time.perf_counter() - t0)
    return {
        "gflops": round(counter.get_total_flops() / 1e9, 2),
        "cpu_s": round(statistics.median(seconds), 3),
    }


def per_item_costs(repeats: int = 2) -> dict:
    """Per-item model costs on this machine, for the projection in docs/scale_projection.md.

    Weights are random (speed and FLOPs do not depend on them): DPT-Hybrid at 384x384 as in
    MiDaS v3.0 (transformers `DPTForDepthEstimation`, hybrid ViT-B/16 + ResNet stem), the
    open_clip ViT-B-32 image tower at 224x224, and MiniLM-L6 (the bundled weights) on captions.
    """
    import open_clip
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    from story.models.text_encoder import load_text_encoder

    torch.set_num_threads(2)
    config = DPTConfig(
        is_hybrid=True,
        image_size=384,
        backbone_featmap_shape=[1, 1024, 24, 24],
        neck_hidden_sizes=[256, 512, 768, 768],
        readout_type="project",
    )
    dpt = DPTForDepthEstimation(config).eval()
    costs = {
        "dpt_hybrid_384_per_frame": {
            "params_m": round(sum(p.numel() for p in dpt.parameters()) / 1e6, 1),
            **_forward_cost(dpt, {"pixel_values": torch.randn(1, 3, 384, 384)}, repeats),
        }
    }
    del dpt
    clip = open_clip.create_model("ViT-B-32", pretrained=None).visual.eval()
    batch = 16
    per_batch = _forward_cost(clip, {"x": torch.randn(batch, 3, 224, 224)}, repeats)
    costs["clip_vit_b32_per_image"] = {
        "params_m": round(sum(p.numel() for p in clip.parameters()) / 1e6, 1),
        "gflops": round(per_batch["gflops"] / batch, 2),
        "cpu_s": round(per_batch["cpu_s"] / batch, 4),
    }
    encoder = load_text_encoder("minilm", device="cpu")
    _, texts, _ = caption_source(512, 7)
    encoder.embed_sentences(texts[:32])
    t0 = time.perf_counter()
    encoder.embed_sentences(texts)
    costs["minilm_l6_per_caption"] = {"cpu_s": round((time.perf_counter() - t0) / len(texts), 5)}
    costs["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--group", type=int, default=500_000, help="Rows per append commit.")
    parser.add_argument("--captions", type=int, default=2_000, help="Distinct captions embedded.")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/story-bench-scale"))
    parser.add_argument("--keep", action="store_true", help="Keep the table afterwards.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--costs-only",
        action="store_true",
        help="Only measure per-item model costs and merge them into --out.",
    )
    args = parser.parse_args()
    if args.costs_only:
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report["per_item_costs"] = per_item_costs()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["per_item_costs"], indent=2))
        return

    cores = len(os.sched_getaffinity(0))
    report: dict = {
        "benchmark": "scale",
        "rows": args.rows,
        "group_rows": args.group,
        "distinct_captions": args.captions,
        "queries": args.queries,
        "machine": {"cpus": cores, "python": platform.python_version()},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "timings_s": {},
    }
    timings = report["timings_s"]

    shutil.rmtree(args.data_dir, ignore_errors=True)
    args.data_dir.mkdir(parents=True)
    work = args.data_dir / "work"
    work.mkdir()
    t0 = time.perf_counter()
    base, texts, queries, para_cos = surrogate_base(args.captions, args.queries, args.seed, work)
    timings["embed_captions"] = round(time.perf_counter() - t0, 2)
    sigma = noise_sigma(para_cos, base.shape[1])
    report["surrogate"] = {
        "paraphrase_cos_median": round(para_cos, 4),
        "noise_sigma_per_dim": round(sigma, 5),
        "rows_per_caption": round(args.rows / len(texts), 1),
    }
    report["rss_mib_before_write"] = round(rss_mib(), 1)
    report["write"] = write_rows(
        args.data_dir, base, texts, args.rows, sigma, args.seed, args.group
    )
    timings["write"] = report["write"]["seconds"]

    index = ClipIndex(str(args.data_dir), "clips", text_dim=base.shape[1])
    t0 = time.perf_counter()
    report["indices"] = index.ensure_indices(ivf_pq_min_rows=min(args.rows, 100_000))
    timings["ensure_indices"] = round(time.perf_counter() - t0, 2)
    vector_s = report["indices"]["seconds"].get("text_vector")
    config = ivf_pq_config(args.rows, base.shape[1])
    report["index_build"] = {
        "partitions": config.num_partitions,
        "sub_vectors": config.num_sub_vectors,
        "ivf_pq_seconds": vector_s,
        "ivf_pq_rows_per_s_per_worker": round(args.rows / vector_s, 1) if vector_s else None,
        "ivf_pq_rows_per_s_per_core": round(args.rows / vector_s / cores, 1) if vector_s else None,
        "all_indices_rows_per_s_per_worker": round(args.rows / timings["ensure_indices"], 1),
        "rss_mib_after": round(rss_mib(), 1),
    }
    report["table_mib_indexed"] = round(dir_size_mib(args.data_dir / "clips.lance"), 1)

    t0 = time.perf_counter()
    exact = exact_top10(base, queries, args.rows, sigma, args.seed)
    timings["exact_numpy"] = round(time.perf_counter() - t0, 2)

    table = index.table
    time_queries(table, queries[:10], 20, 10)
    search = []
    product = (default_nprobes(args.rows, base.shape[1]), 20, PRODUCT_POOL)
    for nprobes, refine, limit in [*SETTINGS, product]:
        latencies, found = time_queries(table, queries, nprobes, refine, limit)
        row = {
            "nprobes": nprobes,
            "refine_factor": refine,
            "limit": limit,
            "product_default": (nprobes, refine, limit) == product,
            **summarise(latencies),
            "recall_at_10": round(recall_at_10(found, exact), 4),
        }
        search.append(row)
        print(row, flush=True)
    report["search"] = search
    report["peak_rss_mib"] = round(peak_rss_mib(), 1)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(args.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
