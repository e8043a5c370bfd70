"""``streamrt chat``: a small terminal chat with a causal LM (the packaged SmolLM2 by default), the
reply streamed token by token. Lines are read from stdin, so it also runs piped (one line per user
turn); ``/reset`` starts over, ``/quit`` or end of input ends. Each turn prefills only its new tokens
(the conversation's cache is reused across turns)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from streamrt.errors import StreamrtError


def register(app: typer.Typer) -> None:
    @app.command("chat")
    def chat(
        model: str = typer.Option("smollm2-135m", help="packaged LLM name or a Hugging Face causal-LM folder"),
        precision: str = typer.Option("auto", help="auto, fp32, bf16, int8-weight-only, int8-dynamic, int4-weight-only"),
        system: Optional[str] = typer.Option(None, help="system prompt (default: the chat template's own)"),
        temperature: float = typer.Option(0.0, help="0 = greedy"),
        top_p: float = typer.Option(1.0, help="nucleus sampling mass (0..1]"),
        max_new_tokens: int = typer.Option(256, help="tokens per reply at most"),
        max_context_tokens: int = typer.Option(2048, help="tokens the whole conversation may hold"),
        seed: int = typer.Option(0, help="sampling seed"),
        threads: int = typer.Option(1, help="torch threads"),
    ) -> None:
        """Chat with an LLM in the terminal; replies stream as they are generated."""
        import torch

        from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
        from streamrt.decoding.llm_sampling import SamplingSettings
        from streamrt.models.llm import load_llm
        from streamrt.models.llm.runtime import build_lm

        torch.set_num_threads(threads)
        try:
            sampling = SamplingSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
            bundle = load_llm(model)
            lm, chosen = build_lm(bundle, precision)
            decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=1, max_context_tokens=max_context_tokens,
                                                                     prefill_tokens_per_step=512), lm=lm)
        except StreamrtError as e:
            raise typer.BadParameter(e.message) from None
        interactive = sys.stdin.isatty()
        typer.echo(f"{bundle.name} ({chosen.name}); /reset starts over, /quit ends", err=True)
        generator = torch.Generator().manual_seed(seed)
        conv = decoder.open()
        start = [{"role": "system", "content": system}] if system else []
        messages = list(start)
        while True:
            if interactive:
                typer.echo("you> ", nl=False, err=True)
            line = sys.stdin.readline()
            if not line or line.strip() == "/quit":
                break
            text = line.strip()
            if text == "/reset":
                messages = list(start)
                continue
            if not text:
                continue
            messages.append({"role": "user", "content": text})
            try:
                conv.set_context(bundle.chat_ids(messages))
            except StreamrtError as e:
                typer.echo(f"error: {e.message}; /reset to start over", err=True)
                messages.pop()
                continue
            conv.start_reply(sampling, bundle.end_token_ids, generator)
            reply = []
            while conv.reply is not None:
                out = decoder.step([conv])[0]
                reply.append(out.text)
                sys.stdout.write(out.text)
                sys.stdout.flush()
            sys.stdout.write("\n")
            messages.append({"role": "assistant", "content": "".join(reply)})
