"""A recording through tiny.en (default preset) at each degradation level forced, fed like a
full-speed client (PIECE_S of audio at a time, then run until blocked), scored with jiwer against
data/real.tsv: hits / substitutions / deletions / insertions, so a rung that loses words shows as
deletions (docs/benchmarks.md, "HTTP uploads"; issue 16 item 6).

    PYTHONPATH=. .venv/bin/python scripts/bench_ladder_rungs.py [NAME] [LEVELS] [PIECE_S] [EOF] [PRESET]

EOF: ``with-last`` (default) sends the end of input with the last piece, so the stream's last step
reads the whole backlog; ``drained`` sends it once the model has worked the backlog off, as
``streamrt.server.transcribe`` does. PRESET: a ``streamrt.presets`` name (default: the default preset).
    PYTHONPATH=. .venv/bin/python scripts/bench_ladder_rungs.py two_cities 0,2,3 10
"""
import csv
import re
import sys
import time
from pathlib import Path

import jiwer

from streamrt.audio import load_audio
from streamrt.clock import MonotonicClock
from streamrt.presets import DEFAULT_PRESET, get_preset, load_model
from streamrt.scheduler.degradation import Degradation
from streamrt.session import Session
from streamrt.types import CommitEvent

DATA = Path("data")
name = sys.argv[1] if len(sys.argv) > 1 else "two_cities"
levels = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0,1,2,3").split(",")]
piece_s = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
eof_mode = sys.argv[4] if len(sys.argv) > 4 else "with-last"
preset = sys.argv[5] if len(sys.argv) > 5 else DEFAULT_PRESET


def words(t: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", t.lower()).split()


ref = {r["id"]: r["reference"] for r in csv.DictReader(open(DATA / "real.tsv"), delimiter="\t")}[name]
audio = load_audio(DATA / "real" / f"{name}.wav", 16000)
model = load_model("tiny.en", get_preset(preset))
ladder = Degradation.for_model(model)
print("preset", preset, "ladder", [s.name for s in ladder.steps], flush=True)
for level in levels:
    ladder.set_level(model, level)
    s = Session(model.create_stream(), MonotonicClock())
    t0 = time.perf_counter()
    piece = int(piece_s * 16000)
    pos = 0
    text = []
    while pos < len(audio):
        s.receive_audio(audio[pos:pos + piece]); pos += piece
        if pos >= len(audio) and eof_mode == "with-last":
            s.receive_eof()
        s.run_until_blocked(model)
    if eof_mode == "drained":
        s.receive_eof()
        s.run_until_blocked(model)
    for e in s.events():
        if isinstance(e, CommitEvent):
            text += [u.text for u in e.units]
    hyp = " ".join(words(" ".join(text)))
    o = jiwer.process_words(" ".join(words(ref)), hyp)
    print(f"level {level} piece {piece_s}s eof {eof_mode}: wer {o.wer:.3f} hits {o.hits} subs {o.substitutions} dels {o.deletions} ins {o.insertions} ({time.perf_counter()-t0:.1f}s)", flush=True)
    print("   ", hyp, flush=True)
    ladder.set_level(model, 0)
