"""The log zoo: every shared real log and every synthetic preset, end to end with default options.

    python benchmarks/log_zoo.py --out /tmp/zoo [--rows ml-100k,sessions] [--timesteps 20000] [--episodes 500]

For each row, the README's commands with their defaults, each in its own process (so its
time and peak RSS are its own):

1. (synthetic rows) ``seqrec data synth --preset NAME``;
2. ``seqrec prepare LOG --out BUNDLE`` — time, peak RSS; a refused simulator is a row result too;
3. ``gymnasium.make("SeqRec-v0", bundle=BUNDLE)`` and one step;
4. ``seqrec train --algo ppo --timesteps T`` (PPO's default action mode, candidates);
5. ``seqrec evaluate RUN --baselines all`` (every policy in the run's env);
6. ``seqrec ope run RUN``.

Each row's results go to ``OUT/NAME/row.json`` (a finished row is skipped on a re-run:
``--force`` redoes it, ``--reuse-bundles`` keeps its bundle); ``OUT/zoo.json`` and ``OUT/zoo.md`` hold the table. Real logs are
read from ``../shared/data`` and skipped, saying so, when absent.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = {  # name: (path under shared/data, reader arguments from its README)
    "ml-100k": ("ml-100k", []),
    "movietweetings-100k": ("movietweetings-100k", []),
    "ciaodvd": ("ciaodvd/movie-ratings.txt", ["--columns", "user=0,item=1,value=4,time=5"]),
}
PRESETS = ("default", "sessions", "sparse-catalogue", "positives-only", "funnel")
SEQREC = [sys.executable, "-m", "seqrec.cli.main"]


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``; its seconds, peak RSS (MB), exit code; output to ``log``."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT, text=True)
    text = log.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None,
            "rc": proc.returncode, "error": next((ln for ln in text.splitlines() if ln.startswith("seqrec: error")), None)}  # fmt: skip


def step_once(bundle: Path) -> dict:
    code = ("import gymnasium as gym, seqrec, json; env = gym.make('SeqRec-v0', bundle=%r); o, i = env.reset(seed=0); "
            "o, r, te, tr, info = env.step(env.action_space.sample()); print(json.dumps({'reward': r, 'item': int(info['item'])}))") % str(bundle)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return {"ok": proc.returncode == 0, "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else None}


def run_row(name: str, out: Path, args: argparse.Namespace) -> dict:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    row: dict = {"row": name}
    if name in REAL:
        rel, reader = REAL[name]
        log = SHARED / rel
        if not log.exists():
            return {**row, "skipped": f"{log} not found (the shared logs are never committed)"}
    else:
        log, reader = folder / "log", []
        if not (log / "synth.json").exists():
            preset = [] if name == "default" else ["--preset", name]
            row["synth"] = timed([*SEQREC, "data", "synth", *preset, "--out", str(log)], folder / "synth.log")
    info = subprocess.run([*SEQREC, "data", "info", str(log), *reader, "--json"], capture_output=True, text=True)
    if info.returncode == 0:
        stats = json.loads(info.stdout)
        row.update(events=stats["n_interactions"], users=stats["n_users"], items=stats["n_items"], behaviours=stats["behaviours"])
    bundle = folder / "bundle"
    previous = json.loads((folder / "row.json").read_text()) if (folder / "row.json").exists() else {}
    if args.reuse_bundles and (bundle / "bundle.json").exists() and "prepare" in previous:
        row["prepare"] = previous["prepare"]  # the bundle (and its recorded build) from the earlier run
    else:
        row["prepare"] = timed([*SEQREC, "prepare", str(log), *reader, "--out", str(bundle)], folder / "prepare.log")
    report_dir = bundle if row["prepare"]["rc"] == 0 else folder / "bundle.refused"
    if (report_dir / "fidelity.json").exists():
        fid = json.loads((report_dir / "fidelity.json").read_text())
        click = fid["click_model"]
        row["simulator"] = {"click_auc": click["auc"], "popularity_auc": click.get("popularity_auc"), "ece": click["ece"],
                            "headline": click["headline"], "p_click": click.get("p_click"), "weak": fid.get("weak_simulator"),
                            "truth_spearman": (fid.get("ground_truth") or {}).get("spearman_click")}  # fmt: skip
    if row["prepare"]["rc"] != 0:
        return row
    meta = json.loads((bundle / "bundle.json").read_text())
    row["encoder"] = {k: meta["encoder_test_metrics"].get(k) for k in ("hr@10", "ndcg@10", "protocol") if k in meta["encoder_test_metrics"]}
    row["step"] = step_once(bundle)
    run = folder / "run-ppo"
    row["train"] = timed([*SEQREC, "train", "--algo", "ppo", "--bundle", str(bundle), "--timesteps", str(args.timesteps), "--out", str(run)],
                         folder / "train.log")  # fmt: skip
    runs = [str(run)] if row["train"]["rc"] == 0 else []
    ev = folder / "evaluation"
    row["evaluate"] = timed([*SEQREC, "evaluate", *runs, "--bundle", str(bundle), "--baselines", "all", "--episodes", str(args.episodes),
                             "--out", str(ev)], folder / "evaluate.log")  # fmt: skip
    if row["evaluate"]["rc"] == 0:
        tables = json.loads((ev / "results.json").read_text())["tables"]
        row["returns"] = {r["policy"]: {"mean": round(r["mean_return"], 3), "ci95": [round(x, 3) for x in r["return_ci95"]]}
                          for r in tables[0]["results"]}  # fmt: skip
        row["env"] = tables[0]["env"]
    ope = folder / "ope"
    row["ope"] = timed([*SEQREC, "ope", "run", *runs, "--bundle", str(bundle), "--out", str(ope)], folder / "ope.log")
    if row["ope"]["rc"] == 0:
        res = json.loads((ope / "ope.json").read_text())
        row["ope"].update(flags=res["flags"], ess={p: round(e["ips"]["ess"], 1) for p, e in res["estimates"].items()},
                          dr={p: round(e["dr"]["estimate"], 4) for p, e in res["estimates"].items()})  # fmt: skip
    return row


def _ci(r: dict | None) -> str:
    return f"{r['mean']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]" if r else "–"


def table(rows: list[dict]) -> str:
    head = ("row", "events", "users", "items", "bundle s", "peak RSS MB", "HR@10 / NDCG@10", "click AUC / pop AUC", "ECE", "truth ρ",
            "random", "most-popular", "greedy", "oracle", "PPO", "OPE ESS (greedy)")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['row']} | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        sim, enc, ret = r.get("simulator", {}), r.get("encoder", {}), r.get("returns", {})
        ppo = next((v for k, v in ret.items() if "ppo" in k), None)
        prep = r["prepare"]
        bundle_s = f"{prep['seconds']:.0f}" + ("" if prep["rc"] == 0 else f" (refused: {(prep['error'] or '')[:60]}…)")
        cells = [r["row"], f"{r.get('events', '?'):,}", f"{r.get('users', '?'):,}", f"{r.get('items', '?'):,}", bundle_s, str(prep["peak_rss_mb"]),
                 f"{enc.get('hr@10', float('nan')):.4f} / {enc.get('ndcg@10', float('nan')):.4f}" if enc else "–",
                 f"{sim.get('click_auc')} / {sim.get('popularity_auc')}", str(sim.get("ece")), str(sim.get("truth_spearman") or "–"),
                 _ci(ret.get("random")), _ci(ret.get("most-popular")), _ci(ret.get("greedy")), _ci(ret.get("oracle")), _ci(ppo),
                 str((r.get("ope", {}).get("ess") or {}).get("greedy", "–"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("zoo"))
    p.add_argument("--rows", default=",".join([*REAL, *PRESETS]), help="comma-separated row names")
    p.add_argument("--timesteps", type=int, default=20_000)
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--force", action="store_true", help="redo rows that already have a row.json")
    p.add_argument("--reuse-bundles", action="store_true", help="with --force: keep a row's built bundle, redo the steps after it")
    args = p.parse_args(argv)
    rows = []
    for name in args.rows.split(","):
        done = args.out / name / "row.json"
        if done.exists() and not args.force:
            rows.append(json.loads(done.read_text()))
            continue
        t0 = time.perf_counter()
        row = run_row(name, args.out, args)
        row["total_seconds"] = round(time.perf_counter() - t0, 1)
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(row, indent=2))
        rows.append(row)
        print(f"{name}: {row.get('skipped') or str(row['total_seconds']) + ' s'}", flush=True)
    (args.out / "zoo.json").write_text(json.dumps(rows, indent=2))
    (args.out / "zoo.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
