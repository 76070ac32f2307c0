"""The simulator fit of a bundle build, run in a second process beside encoder pretraining.

The two stages are independent (the simulator never reads the encoder) and each uses one
thread by default, so on a machine with two cores a build that runs them side by side takes
about the longer of the two instead of their sum: MovieTweetings-100K 203 s -> about 120 s.
:func:`start` launches ``python -m seqrec.envs.side_fit`` on the dataset the build has already
written (memory-mapped, so the second process adds little memory) and :meth:`SideFit.wait`
returns the fitted simulator, or raises the child's one-line error. A subprocess rather
than :mod:`multiprocessing` because spawning re-imports the caller's ``__main__``: a plain
script calling ``gymnasium.make("SeqRec-v0")`` would run itself again.

Shapes: none (files in, files out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from seqrec.infra.errors import SeqrecError
from seqrec.simulators.config import SimulatorConfig
from seqrec.simulators.simulator import CHECKPOINT_NAME, UserSimulator

__all__ = ["SideFit", "epoch_lines", "parallel_fits", "start"]

MIN_EVENTS = 50_000
"""Logs smaller than this fit both stages in seconds: a second process (a few seconds to
import torch) would cost more than it saves."""
MAX_EVENTS = 2_000_000
"""Logs larger than this keep the stages one after the other: each stage's peak memory then
grows with the log, and two at once could double the build's peak (the 10M-event bundle
peaks at 6.6 GB one stage at a time)."""
ERROR_FILE = "side_fit.error"


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_fits(setting: bool | None, n_events: int, threads: int) -> bool:
    """Whether a build runs the simulator fit beside pretraining: ``setting`` when given, else
    (None: auto) when two stages of ``threads`` threads fit in the cores and the log has
    between :data:`MIN_EVENTS` and :data:`MAX_EVENTS` events."""
    if setting is not None:
        return bool(setting)
    return available_cores() >= 2 * max(threads, 1) and MIN_EVENTS <= n_events <= MAX_EVENTS


@dataclass
class SideFit:
    """A simulator fit running in a child process; :meth:`wait` for its result."""

    process: subprocess.Popen
    out: Path

    def wait(self) -> tuple[UserSimulator, float]:
        """The fitted simulator and the child's fit seconds; :class:`SeqrecError` with the child's message if it failed."""
        code = self.process.wait()
        error = self.out / ERROR_FILE
        if code != 0:
            message = error.read_text().strip() if error.exists() else f"the simulator fit process exited with code {code}"
            raise SeqrecError(message)
        sim = UserSimulator.load(self.out / CHECKPOINT_NAME)
        return sim, float(sim.info.get("fit_seconds", 0.0))

    def stop(self) -> None:
        """End the child now (the build failed elsewhere)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(dataset: Path, config: SimulatorConfig, out: Path, threads: int, progress: bool) -> SideFit:
    """Fit a simulator on the saved ``dataset`` folder into ``out/simulator.pt`` in a child process."""
    argv = [sys.executable, "-m", "seqrec.envs.side_fit", str(dataset), json.dumps(config.to_dict()), str(out), str(threads),
            "1" if progress else "0"]
    return SideFit(subprocess.Popen(argv, stdin=subprocess.DEVNULL), out)


def _main(dataset: str, config_json: str, out: str, threads: str, progress: str) -> int:
    from seqrec.data.sequences import SequenceData
    from seqrec.infra.threads import torch_threads
    from seqrec.simulators.simulator import fit_simulator

    try:
        with torch_threads(int(threads)):
            seq = SequenceData.load(Path(dataset))
            fit_simulator(seq, SimulatorConfig.from_dict(json.loads(config_json)), Path(out), on_epoch=epoch_lines(progress == "1"))
    except (SeqrecError, OSError, ValueError) as exc:
        (Path(out) / ERROR_FILE).write_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 1
    return 0


def epoch_lines(progress: bool):
    """One stderr line per simulator-fit epoch (None when quiet): lines, not a bar, so that two
    stages can report at once."""
    if not progress:
        return None

    def line(epoch: int, m: dict) -> None:
        print(f"simulator fit: dim {m['dim']} epoch {epoch}: valid log-loss {m['valid_log_loss']:.4f}, AUC {m['valid_auc']}",
              file=sys.stderr, flush=True)

    return line


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:]))
