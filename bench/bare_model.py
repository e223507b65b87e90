"""The configured model alone: windows/s of ``embed_windows`` on real audio, no database.

    python -m bench.bare_model FILE [FILE ...] [--batch 64] [--repeat 2]

The reference that ingest throughput is compared with where ingest runs somewhere this
benchmark can also run: inside a worker container (``tests/test_compose.py`` runs it
there beside one and three workers). It cuts the files into the model's windows as
ingest does, embeds them in batches once untimed (loading, tracing), then ``--repeat``
times, and prints one JSON line: windows, seconds per pass, windows/s at the mean pass
and at the slowest.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    django.setup()
    from annotations.audio import Framing, iter_resampled_blocks, iter_windows
    from workers.embedding_models import configured_model

    model = configured_model()
    spec = model.spec
    framing = Framing(spec.sample_rate, round(spec.window_s * spec.sample_rate), round(spec.hop_s * spec.sample_rate))
    windows = np.stack(
        [w for path in args.files for _, w in iter_windows(iter_resampled_blocks(path, spec.sample_rate), framing)]
    )
    batches = [windows[i : i + args.batch] for i in range(0, len(windows), args.batch)]
    for batch in batches:  # untimed: loading and tracing
        model.embed_windows(batch)
    passes = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        for batch in batches:
            model.embed_windows(batch)
        passes.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "model": spec.name,
                "windows": len(windows),
                "seconds": passes,
                "windows_per_s": len(windows) / float(np.mean(passes)),
                "windows_per_s_slowest": len(windows) / max(passes),
            }
        )
    )


if __name__ == "__main__":
    main()
