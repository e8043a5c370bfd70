#!/usr/bin/env python3
"""Regenerate the committed evaluation data under data/ (see docs/data.md).

    python scripts/make_testset.py [--out DIR] [--only testset|longform|translation|real ...]

Parts and what each needs:
  testset      24 short English clips over five synthetic voices -> data/testset/, data/testset.tsv
               (flite voices slt, kal16, awb, rms; festival + festvox-us-slt-hts)
  longform     all English sentences in speaker turns, one file -> data/longform/{longform.wav,
               segments.yaml, references.txt} (same synthesizers)
  translation  German, French, Spanish, Italian sentences -> data/translation/, data/translation.tsv
               (espeak-ng)
  real         the two human recordings of the PyPI wheel moonshine-voice -> data/real/, data/real.tsv

Deterministic: the text lives in scripts/testset_text.py, the synthesizers take no random seed, the
resampler (soxr) and the WAV writer are fixed; the same package versions give the same bytes.
A part whose synthesizer or package is missing is skipped with the reason and the apt/pip package
to install; the files already committed for it are left untouched and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testset_text import BECKETT, ENGLISH, TRANSLATION, TWO_CITIES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000  # Hz, every file written is mono 16-bit PCM at this rate
PEAK = 0.5  # every synthetic sentence is scaled to this peak amplitude (full scale = 1.0)
TRIM_DB = -40.0  # synthesizer silence: 10 ms frames quieter than this (dB below the peak) are cut
LEAD_S = 0.2  # silence before a short clip, seconds
TAIL_S = 0.3  # silence after a short clip, seconds
PAUSE_S = 0.6  # long-form: silence between sentences of one speaker, seconds
TURN_PAUSE_S = 1.0  # long-form: silence where the speaker changes, and at both ends, seconds
TURN_SENTENCES = 4  # long-form: sentences per speaker turn
TESTSET_SIZE = 24  # short clips: the first TESTSET_SIZE sentences of ENGLISH
ESPEAK_WPM = 130  # espeak-ng speaking rate for the translation set, words per minute


class MissingTool(RuntimeError):
    """A synthesizer or package a part needs is not installed; the message says what to install."""


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: ``name`` labels files and speakers, ``argv`` runs it on a text file."""

    name: str
    argv: tuple[str, ...]  # {text} and {wav} are replaced by the input text file and output WAV
    apt: str  # the Debian package that provides it

    def synthesize(self, text: str, work: Path) -> np.ndarray:
        """Speak ``text``; return mono float32 at SAMPLE_RATE. MissingTool if the voice fails."""
        if shutil.which(self.argv[0]) is None:
            raise MissingTool(f"{self.argv[0]} not found (apt-get install {self.apt})")
        text_file, wav_file = work / f"{self.name}.txt", work / f"{self.name}.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        argv = [a.replace("{text}", str(text_file)).replace("{wav}", str(wav_file)) for a in self.argv]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or not wav_file.exists() or wav_file.stat().st_size <= 44:
            raise MissingTool(
                f"voice {self.name} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
                f" (apt-get install {self.apt})"
            )
        return read_mono(wav_file)


def flite(voice: str) -> Voice:
    return Voice(voice, ("flite", "-voice", voice, "-f", "{text}", "-o", "{wav}"), "flite")


HTS = Voice(
    "hts",
    ("text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "{text}", "-o", "{wav}"),
    "festival festvox-us-slt-hts",
)
ENGLISH_VOICES = (flite("slt"), flite("kal16"), flite("awb"), flite("rms"), HTS)


def espeak(language: str) -> Voice:
    argv = ("espeak-ng", "-v", language, "-s", str(ESPEAK_WPM), "-f", "{text}", "-w", "{wav}")
    return Voice(f"espeak-{language}", argv, "espeak-ng")


# ---------------------------------------------------------------- audio helpers


def read_mono(path: Path) -> np.ndarray:
    """Any soundfile-readable file -> mono float32 at SAMPLE_RATE."""
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


def trim_and_scale(x: np.ndarray) -> np.ndarray:
    """Cut the synthesizer's leading/trailing silence (TRIM_DB) and scale the peak to PEAK."""
    frame = SAMPLE_RATE // 100
    peak = float(np.max(np.abs(x))) or 1.0
    n = len(x) // frame
    level = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)
    loud = np.flatnonzero(level >= peak * 10 ** (TRIM_DB / 20))
    if len(loud):
        x = x[loud[0] * frame : (loud[-1] + 1) * frame]
    return (x * (PEAK / peak)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def write_wav(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    for row in rows:
        if any("\t" in cell or "\n" in cell for cell in row):
            raise ValueError(f"{path.name}: a cell holds a tab or newline: {row}")
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def clear(directory: Path) -> None:
    """Empty a generated directory so that a rerun leaves no stale clips behind."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


# ---------------------------------------------------------------- parts


def make_testset(out: Path, work: Path) -> list[Path]:
    """Sentence i of the first TESTSET_SIZE is spoken by voice i mod 5."""
    clips = []
    for i, text in enumerate(ENGLISH[:TESTSET_SIZE]):
        voice = ENGLISH_VOICES[i % len(ENGLISH_VOICES)]
        speech = trim_and_scale(voice.synthesize(text, work))
        clips.append((f"en{i:02d}_{voice.name}", text, np.concatenate([silence(LEAD_S), speech, silence(TAIL_S)])))
    clear(out / "testset")
    rows = []
    for clip_id, text, audio in clips:
        write_wav(out / "testset" / f"{clip_id}.wav", audio)
        rows.append((clip_id, f"testset/{clip_id}.wav", text))
    write_tsv(out / "testset.tsv", ("id", "audio", "reference"), rows)
    return [out / "testset.tsv", out / "testset"]


def make_longform(out: Path, work: Path) -> list[Path]:
    """All ENGLISH sentences in turns of TURN_SENTENCES, voices in rotation, short pauses between."""
    pieces, segments, offset = [silence(TURN_PAUSE_S)], [], TURN_PAUSE_S
    for i, text in enumerate(ENGLISH):
        voice = ENGLISH_VOICES[(i // TURN_SENTENCES) % len(ENGLISH_VOICES)]
        speech = trim_and_scale(voice.synthesize(text, work))
        duration = len(speech) / SAMPLE_RATE
        segments.append((duration, offset, voice.name, text))
        last = i == len(ENGLISH) - 1
        turn_ends = (i + 1) % TURN_SENTENCES == 0
        gap = TURN_PAUSE_S if last or turn_ends else PAUSE_S
        pieces += [speech, silence(gap)]
        offset += duration + gap
    folder = out / "longform"
    clear(folder)
    write_wav(folder / "longform.wav", np.concatenate(pieces))
    # MuST-C style segmentation, as OmniSTEval (--speech_segmentation) and FBK stream_laal read it:
    # seconds, one entry per reference line, in audio order.
    yaml_lines = [
        f"- {{duration: {d:.6f}, offset: {o:.6f}, speaker_id: {spk}, wav: longform.wav}}"
        for d, o, spk, _ in segments
    ]
    (folder / "segments.yaml").write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
    (folder / "references.txt").write_text("\n".join(t for *_, t in segments) + "\n", encoding="utf-8")
    return [folder]


def make_translation(out: Path, work: Path) -> list[Path]:
    clips, sources, counts = [], [], {}
    for language, source, reference in TRANSLATION:
        n = counts[language] = counts.get(language, -1) + 1
        clip_id = f"{language}{n:02d}"
        speech = trim_and_scale(espeak(language).synthesize(source, work))
        clips.append((clip_id, language, reference, np.concatenate([silence(LEAD_S), speech, silence(TAIL_S)])))
        sources.append((clip_id, language, source))
    folder = out / "translation"
    clear(folder)
    rows = []
    for clip_id, language, reference, audio in clips:
        write_wav(folder / f"{clip_id}.wav", audio)
        rows.append((clip_id, f"translation/{clip_id}.wav", reference, language))
    write_tsv(out / "translation.tsv", ("id", "audio", "reference", "language"), rows)
    write_tsv(folder / "sources.tsv", ("id", "language", "source"), sources)
    return [out / "translation.tsv", folder]


def moonshine_assets() -> Path:
    """The wheel's assets folder, found without importing the package (importing loads its .so)."""
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or not spec.submodule_search_locations:
        raise MissingTool("Python package moonshine-voice not installed (pip install moonshine-voice)")
    return Path(list(spec.submodule_search_locations)[0]) / "assets"


def make_real(out: Path, work: Path) -> list[Path]:
    """Resampled copies (the wheel is MIT-licensed; its notice is copied beside them)."""
    assets = moonshine_assets()
    recordings = (("two_cities", TWO_CITIES), ("beckett", BECKETT))
    for name, _ in recordings:
        if not (assets / f"{name}.wav").exists():
            raise MissingTool(f"{assets / name}.wav missing from the installed moonshine-voice")
    folder = out / "real"
    clear(folder)
    rows = []
    for name, text in recordings:
        write_wav(folder / f"{name}.wav", read_mono(assets / f"{name}.wav"))
        rows.append((name, f"real/{name}.wav", text))
    write_tsv(out / "real.tsv", ("id", "audio", "reference"), rows)
    license_file = next(iter(sorted(assets.parent.parent.glob("moonshine_voice-*.dist-info/licenses/LICENSE"))), None)
    notice = license_file.read_text(encoding="utf-8") if license_file else "MIT License, Moonshine AI\n"
    (folder / "LICENSE.moonshine-voice").write_text(notice, encoding="utf-8")
    return [out / "real.tsv", folder]


PARTS = {"testset": make_testset, "longform": make_longform, "translation": make_translation, "real": make_real}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data", help="output folder (default: data/)")
    parser.add_argument("--only", choices=sorted(PARTS), action="append", help="make only these parts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    skipped = []
    with tempfile.TemporaryDirectory(prefix="make_testset_") as tmp:
        for name in args.only or list(PARTS):
            try:
                written = PARTS[name](args.out, Path(tmp))
            except MissingTool as missing:
                skipped.append(name)
                print(f"skipped {name}: {missing}; its files under {args.out} are left as they were")
                continue
            print(f"made {name}: " + ", ".join(str(p.relative_to(args.out)) for p in written))
    if skipped:
        print(f"not regenerated: {', '.join(skipped)}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
