"""Turn-taking policies: when the voice agent answers, and when it yields to the user.

A policy sees a ``TurnView`` (VAD state, silence so far, the user's transcript, whether the agent
is speaking, the LLM's end-of-turn probability) every VAD frame and answers ``Listen()``,
``Speak()`` or ``Yield()``. Built in: ``silence`` (a silence threshold) and ``semantic`` (the LLM's
own probability of its end-of-turn token on the transcript). More register in the entry-point
group ``streamrt.turn_policies`` (``policies.turn_taking.registry``)."""

from policies.turn_taking.base import Listen, Speak, TurnAction, TurnPolicy, TurnView, Yield

__all__ = ["Listen", "Speak", "TurnAction", "TurnPolicy", "TurnView", "Yield"]
