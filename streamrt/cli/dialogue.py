"""``streamrt dialogue eval``: scripted spoken dialogues through the voice agent, in virtual time.

    streamrt dialogue eval                                   # data/dialogues.yaml, all scripts
    streamrt dialogue eval --script quick --format json      # one script, the report as JSON
    streamrt dialogue eval --turn-policy semantic --out runs/dialogue-semantic
    streamrt dialogue eval --video face --echo -6dB --background   # issue 20: echo, a TV, a camera
    streamrt dialogue score runs/X/dialogues.jsonl --turns   # again from the log, + one row per user turn
    streamrt dialogue eval --video face --video-fps 5 --video-jitter-ms 60 --video-drop 0.2 --echo 0dB

Prints the issue's goals (response onset p50/p90, barge-in reaction p90, pause takeover, false
barge-ins, the agent's WER) with ours beside them, then the other figures; ``--turns`` adds one row
per user turn (what was heard, the end-of-turn score and silence it was answered on, the scores as
they came, the onset: why an answer waited). ``--out`` writes
``dialogues.jsonl`` (the timed logs, ``metrics.dialogue``) and ``report.json``. See
docs/metrics.md ("Dialogue") for the definitions. ``--echo``, ``--background`` and ``--video``
put the user in a room (``streamrt.evaluation.dialogue_room``: the agent's voice back into the
microphone, another voice talking, a camera on the user's face) and add the rows of speech that
is not the user's; ``--video-delay-ms``, ``--video-jitter-ms`` and ``--video-drop`` make the
camera's frames arrive late, jittered (in order) or not at all, with their media times kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

EXTRA_ROWS = (
    ("user turns answered", None),
    ("barge-in reaction, p50", "barge_in_p50_ms"),
    ("barge-ins missed (agent spoke on)", "barge_in_missed"),
    ("ASR finalisation, p50 / p90", "asr_final"),
    ("end-of-turn decision, p50 / p90", "endpoint"),
    ("LLM time to first text, p50 / p90", "llm_ttft"),
    ("TTS first chunk, p50 / p90", "tts_first_chunk"),
)


ROOM_ROWS = (
    ("false barge-ins on the agent's echo alone", "echo_barge_ins", "agent_turns", "agent turns"),
    ("false barge-ins on background speech", "background_barge_ins", "background", "over agent speech"),
)


def format_table(rep: dict) -> str:
    """The goals table and the other figures, as Markdown (pastes into docs/benchmarks.md)."""
    from streamrt.evaluation.dialogue_report import format_value

    s = rep["scores"]
    lines = ["| measure | goal | ours |", "|---|---|---|"]
    for g in rep["goals"]:
        mark = "" if g["met"] is None else (" (met)" if g["met"] else " (not met)")
        lines.append(f"| {g['measure']} | {g['goal']} | {format_value(g['key'], g['ours'])}{mark} |")
    for name, key in EXTRA_ROWS:
        if key is None:
            value = f"{s['turns'] - s['unanswered']} / {s['turns']}"
        elif key in ("barge_in_p50_ms", "barge_in_missed"):
            value = format_value(key, s.get(key))
            if key == "barge_in_missed":
                value += f" of {s['interruptions']}"
        else:
            value = f"{format_value(key + '_p50_ms', s.get(key + '_p50_ms'))} / " \
                    f"{format_value(key + '_p90_ms', s.get(key + '_p90_ms'))}"
        lines.append(f"| {name} | | {value} |")
    if rep["settings"].get("room"):
        for name, key, of, what in ROOM_ROWS:
            n = s.get(of) or 0
            rate = f"{100 * s[key] / n:.0f} %: " if n else ""
            lines.append(f"| {name} | 0 % | {rate}{s.get(key)} of {n} {what} |")
        lines.append(f"| agent turns answering no user speech (background, or a pause taken over) | | "
                     f"{s.get('unprompted_turns')} of {s.get('agent_turns')} |")
        lines.append(f"| agent paused, then resumed (not a barge-in) | | {s.get('agent_resumed')} |")
    if s.get("user_continued"):
        lines.append(f"| agent turns withdrawn: the user went on after a takeover | | {s['user_continued']} |")
    lines.append(f"\n{s['dialogues']} dialogues, {s['turns']} user turns, {s['pauses']} pauses, "
                 f"{s['backchannels']} backchannels and {s['interruptions']} interruptions over agent speech"
                 + (f"; {s['virtual_s']} s of dialogue, {s['compute_s']} s of compute" if s["compute_s"] else ""))
    return "\n".join(lines)


def eval_cmd(
    scripts: Path = typer.Option(Path("data/dialogues.yaml"), "--scripts", help="script file (YAML; see "
                                 "streamrt.evaluation.dialogue_script)"),
    script: Optional[list[str]] = typer.Option(None, "--script", help="only this script id (repeat)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for dialogues.jsonl and report.json"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
    turn_policy: Optional[str] = typer.Option(None, "--turn-policy", help="turn-taking policy: silence, "
                                              "semantic, or another registered one (the served agent's if unset)"),
    asr: str = typer.Option("tiny.en", "--asr", help="Whisper model for the user's speech"),
    preset: Optional[str] = typer.Option(None, "--preset", help="its streaming configuration (`streamrt "
                                         "presets`; the default preset if unset)"),
    llm: str = typer.Option("smollm2-135m", "--llm", help="the LLM: packaged name or Hugging Face folder"),
    llm_precision: str = typer.Option("auto", "--llm-precision", help="auto (by this CPU, as served), fp32, "
                                      "int8-dynamic, ..."),
    max_reply_tokens: Optional[int] = typer.Option(None, "--max-reply-tokens", min=1, help="reply length cap, "
                                                   "tokens (the served agent's if unset)"),
    wer_model: str = typer.Option("tiny.en", "--wer-model", help="Whisper model that transcribes the agent's "
                                  "speech for its WER"),
    no_wer: bool = typer.Option(False, "--no-wer", help="skip the agent's intelligibility (WER)"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads"),
    clock: str = typer.Option("process", "--clock", help="compute charged to the virtual clock: process (CPU "
                              "seconds; steady on a shared machine; use with --threads 1), wall, or none"),
    feed_ms: float = typer.Option(20.0, "--feed-ms", min=1.0, help="user audio per feed while idle, ms"),
    clips: Optional[Path] = typer.Option(None, "--clips", help="clip cache (default: $STREAMRT_CACHE/"
                                         "dialogue-clips)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress lines"),
    turns: bool = typer.Option(False, "--turns", help="also print each user turn: what was heard, the "
                               "end-of-turn score and silence the answer waited for, the onset"),
    video: str = typer.Option("off", "--video", help="a camera on the user: off, face (lips move while the user "
                              "speaks, still otherwise) or still (lips never move); needs the video extra"),
    video_fps: float = typer.Option(15.0, "--video-fps", help="camera frames per second (1-60)"),
    video_delay_ms: float = typer.Option(0.0, "--video-delay-ms", help="every frame arrives this late, ms after "
                                         "it was taken (it keeps its media time)"),
    video_jitter_ms: float = typer.Option(0.0, "--video-jitter-ms", help="plus a random 0..this many ms per "
                                          "frame, frames kept in order (as over a WebSocket or WebRTC)"),
    video_drop: float = typer.Option(0.0, "--video-drop", help="the fraction of frames that never arrive, "
                                     "0..1 (a varying rate)"),
    video_seed: int = typer.Option(0, "--video-seed", help="seed of the frames' jitter and drops and of the talking mouth's phase"),
    echo: Optional[str] = typer.Option(None, "--echo", help="the agent's voice back into the microphone: a "
                                       "ratio (0.5) or dB (-6dB) of what was played; off if unset"),
    echo_delay_ms: float = typer.Option(30.0, "--echo-delay-ms", min=0.0, help="the echo's delay, ms"),
    background: bool = typer.Option(False, "--background", help="another voice talks into each answer that "
                                    "has no scripted backchannel or interruption"),
    background_gain: str = typer.Option("1.0", "--background-gain", help="its level over the user's voice: "
                                        "ratio or dB"),
) -> None:
    """Play scripted dialogues to the voice agent in virtual time; print the goals table."""
    import asyncio

    import torch

    from streamrt.errors import StreamrtError
    from streamrt.evaluation.dialogue import COMPUTE_CLOCKS, RunnerSettings, VirtualClock, run_dialogues
    from streamrt.evaluation.dialogue_report import agent_speech, agent_wer, format_turns, report
    from streamrt.evaluation.dialogue_room import Room, RoomSettings, face_loops, parse_gain
    from streamrt.evaluation.dialogue_script import ClipSynth, read_scripts

    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"--format must be table or json, got {fmt!r}")
    if clock not in COMPUTE_CLOCKS:
        raise typer.BadParameter(f"--clock must be one of {', '.join(COMPUTE_CLOCKS)}, got {clock!r}")
    torch.set_num_threads(threads)
    try:
        chosen = read_scripts(scripts, only=script)
        room = RoomSettings(echo_gain=None if echo is None else parse_gain(echo), echo_delay_ms=echo_delay_ms,
                            background=background, background_gain=parse_gain(background_gain), video=video,
                            fps=video_fps, video_delay_ms=video_delay_ms, video_jitter_ms=video_jitter_ms,
                            video_drop=video_drop, video_seed=video_seed)
        landmarker = loops = None
        if video != "off":
            from streamrt.models.faces import load_face_mesh

            landmarker = load_face_mesh()
            loops = face_loops(landmarker, video_fps)  # rendered once, before the clock starts
        in_room = echo is not None or background or video != "off"
        vclock = VirtualClock(clock)
        from streamrt.evaluation.dialogue_agent import load_eval_agent

        agent = load_eval_agent(vclock, asr=asr, preset=preset, llm=llm, llm_precision=llm_precision,
                                turn_policy=turn_policy, max_reply_tokens=max_reply_tokens, lips=landmarker)

        def progress(run) -> None:
            if not quiet:
                typer.echo(f"{run.log.id}: {sum(u.kind in ('turn', 'interruption') for u in run.log.user)} user turns, "
                           f"{run.virtual_s:.1f} s dialogue, {run.compute_s:.1f} s compute", err=True)

        runs = asyncio.run(run_dialogues(chosen, agent.new_session, agent.scheduler, vclock, ClipSynth(clips),
                                         RunnerSettings(feed_ms=feed_ms), progress,
                                         (lambda: Room(room, loops)) if in_room else None))
        wer_part: dict[str, Any] = {}
        if not no_wer:
            from streamrt.models.whisper import load_whisper, transcribe_offline

            bundle = load_whisper(wer_model)
            wer_part = agent_wer(agent_speech(runs), lambda x: transcribe_offline(bundle, x))
    except StreamrtError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    settings = {**agent.describe(), "scripts": str(scripts), "script_ids": [s.id for s in chosen],
                "clock": clock, "threads": threads, "feed_ms": feed_ms, "wer_model": None if no_wer else wer_model,
                **({"room": room.describe()} if in_room else {})}
    rep = report(runs, wer_part, settings)
    if out is not None:
        from metrics.dialogue import write_dialogue_logs

        out.mkdir(parents=True, exist_ok=True)
        write_dialogue_logs(out / "dialogues.jsonl", [r.log for r in runs])
        (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    if fmt == "json":
        typer.echo(json.dumps(rep, indent=2))
    else:
        typer.echo(format_table(rep))
        if turns:
            typer.echo("\n" + format_turns(rep["turns"]))
        for err in rep["errors"]:
            typer.echo(f"session error: {err}", err=True)
    if not runs or not rep["scores"]["turns"]:
        raise typer.Exit(1)


def score_cmd(
    log: Path = typer.Argument(..., help="dialogues.jsonl written by `dialogue eval --out`"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
    turns: bool = typer.Option(False, "--turns", help="also print each user turn: what was heard, the "
                               "end-of-turn score and silence the answer waited for, the onset"),
) -> None:
    """Score saved dialogue logs again (no model runs; the agent's WER needs `dialogue eval`)."""
    from metrics.dialogue import read_dialogue_logs
    from streamrt.errors import StreamrtError
    from streamrt.evaluation.dialogue_report import format_turns, report_logs

    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"--format must be table or json, got {fmt!r}")
    try:
        logs = read_dialogue_logs(log)
    except (OSError, StreamrtError) as e:
        typer.echo(f"error: {e.message if isinstance(e, StreamrtError) else e}", err=True)
        raise typer.Exit(2) from None
    rep = report_logs(logs, {}, {"log": str(log)})
    typer.echo(json.dumps(rep, indent=2) if fmt == "json" else format_table(rep))
    if turns and fmt != "json":
        typer.echo("\n" + format_turns(rep["turns"]))


def register(app: typer.Typer) -> None:
    """Add the ``dialogue`` group with ``eval`` and ``score``."""
    dialogue_app = typer.Typer(help="The voice agent: scripted dialogues.", no_args_is_help=True)
    dialogue_app.command("eval")(eval_cmd)
    dialogue_app.command("score")(score_cmd)
    app.add_typer(dialogue_app, name="dialogue")
