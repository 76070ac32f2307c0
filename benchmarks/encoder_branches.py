"""What the CNN branch adds: the fused encoder's own branches, and ensembles, scored alone.

Reads finished runs of ``benchmarks/encoders.py`` (no training): for each seed, the
``cnn+gnn`` parallel checkpoint and the ``gnn`` checkpoint, and scores on the valid and test
targets (full catalogue ranking, float32):

* ``fused``: the model as the env uses it (gated mix of the two branch states);
* ``fused: cnn branch`` / ``fused: gnn branch``: each branch state alone, through the shared
  output layer;
* ``fused: branch logit sum``: the two branches' log-softmax scores added (a two-member ensemble);
* ``gnn``: the gnn-only model of the same seed;
* ``gnn + gnn (next seed)``: gnn-only ensembled with the next seed's gnn-only model
  (log-softmax sum), the size of gain an ensemble of two equal members gives on this data;
* with ``--cnn``, ``cnn`` (the cnn-only model of the same seed) and ``gnn + cnn (trained
  apart)``: the two single-branch models ensembled (log-softmax sum), i.e. what a CNN view
  adds to the GNN when neither was trained beside the other: the ceiling of a fusion that
  only ensembles them.

    python benchmarks/encoder_branches.py --fused /tmp/enc4/fused --gnn /tmp/enc4/gnn --cnn /tmp/enc4/cnn --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from seqrec.data.prepare import prepare_dataset
from seqrec.encoders.metrics import ranking_metrics, target_ranks
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.train import CHECKPOINT_NAME, split_examples


@torch.no_grad()
def log_scores(encoder: SequenceEncoder, items: torch.Tensor, behaviours: torch.Tensor) -> dict[str, torch.Tensor]:
    """Log-softmax scores (n, n_items) of the state and, for a parallel fused model, of each branch."""
    state, branches = encoder.forward_branches(items, behaviours)
    out = {"state": torch.log_softmax(encoder.scores(state), -1)}
    for name, branch in zip(("cnn", "gnn"), branches):
        out[name] = torch.log_softmax(encoder.scores(branch), -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--fused", type=Path, required=True, help="--out folder of a cnn+gnn:parallel run")
    parser.add_argument("--gnn", type=Path, required=True, help="--out folder of a gnn run")
    parser.add_argument("--cnn", type=Path, default=None, help="--out folder of a cnn run (optional)")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seq = prepare_dataset(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    load = lambda folder: SequenceEncoder.load(folder / CHECKPOINT_NAME, dataset_key=seq.meta["key"]).eval()  # noqa: E731
    # each checkpoint is loaded once and scored once per split
    fused_models = [load(args.fused / f"cnn_gnn-parallel-seed{seed}") for seed in seeds]
    gnn_models = [load(args.gnn / f"gnn-seed{seed}") for seed in seeds]
    cnn_models = [load(args.cnn / f"cnn-seed{seed}") for seed in seeds] if args.cnn is not None else []
    max_len = max(m.config.max_len for m in fused_models + gnn_models + cnn_models)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for split in ("valid", "test"):
        items, behaviours, targets = split_examples(seq, split, max_len)
        gnn_scores = [log_scores(model, items, behaviours)["state"] for model in gnn_models]
        for i in range(len(seeds)):
            fused = log_scores(fused_models[i], items, behaviours)
            gnn, other = gnn_scores[i], gnn_scores[(i + 1) % len(seeds)]
            candidates = {"fused": fused["state"], "fused: cnn branch": fused["cnn"], "fused: gnn branch": fused["gnn"],
                          "fused: branch logit sum": fused["cnn"] + fused["gnn"], "gnn": gnn, "gnn + gnn (next seed)": gnn + other}  # fmt: skip
            if cnn_models:
                cnn = log_scores(cnn_models[i], items, behaviours)["state"]
                candidates.update({"cnn": cnn, "gnn + cnn (trained apart)": gnn + cnn})
            for name, scores in candidates.items():
                m = ranking_metrics(target_ranks(scores, targets))
                rows.setdefault(name, {}).setdefault(split, []).append((m["ndcg@10"], m["hr@10"]))
    print(f"seeds {args.seeds}; per seed NDCG@10, then the mean NDCG@10 / HR@10\n")
    print("| scored | valid NDCG@10 per seed | valid mean | test NDCG@10 per seed | test mean |")
    print("|---|---|---|---|---|")
    for name, by_split in rows.items():
        cells = []
        for split in ("valid", "test"):
            vals = by_split[split]
            cells.append(", ".join(f"{n:.4f}" for n, _ in vals))
            cells.append(f"{sum(n for n, _ in vals) / len(vals):.4f} / {sum(h for _, h in vals) / len(vals):.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
