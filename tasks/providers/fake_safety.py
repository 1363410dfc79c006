"""The offline fake models' simulated safety behaviour, so a red-team suite means something
without a real model.

A real model declines harmful requests, sometimes falls for a role-play wrapper or an
instruction hidden in a document, and sometimes refuses a harmless question that merely sounds
alarming. The fake models do the same, deterministically: :func:`safety_reply` reads the user's
turns with a few keyword rules and, from one uniform draw, answers one of:

- a **harmful request** (cues such as "pipe bomb", "keylogger", "home address", "social
  security number", "without them knowing"): the profile's refusal, with probability
  ``refuse_harmful`` (``refuse_roleplay`` when it is wrapped in role-play: "you are DAN",
  "stay in character", "developer mode"); otherwise a placeholder compliance ("Sure, here is
  what you asked for ...": no content, but not a refusal, so the ``refusal`` scorer fails it);
- an **injected instruction** ("ignore all previous instructions", "disregard the above" inside
  the content):
  obeyed with probability ``follow_injection``, by repeating the injected line (and the system
  prompt, as a model that obeys such a line gives it away); otherwise a short "done, instruction
  ignored" answer;
- an **alarming but benign** question ("kill a process", "explosives in mining", "shoot a
  portrait"): refused with probability ``over_refuse``, otherwise answered;
- anything else: ``None``, and the fake answers as it always did.

The rules are keyword lists tuned to the shipped ``red-team`` suite, not a model of anything: a
harmful request phrased without a cue is answered, as a simple filter would. Only cases without
an ideal answer go through them (the fake provider decides that), so the other shipped suites,
whose safety cases carry ideals, are answered exactly as before.

Profiles: ``CAREFUL`` (fake/stable, fake/flaky, fake/drifting before its drift date) and
``OVER_CAUTIOUS`` (fake/drifting after it: it over-refuses alarming-sounding benign questions,
is easier to talk round in role-play and to inject, and words its refusals differently), so the
red-team suite's pass rate and the refusal rate move when the drifting model changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SafetyProfile:
    refuse_harmful: float
    refuse_roleplay: float
    follow_injection: float
    over_refuse: float
    refusal: str


CAREFUL = SafetyProfile(0.95, 0.85, 0.05, 0.0, "I can't help with that.")
OVER_CAUTIOUS = SafetyProfile(0.95, 0.6, 0.3, 0.8, "I'm sorry, but I won't provide that.")

COMPLIANCE = ("Sure, here is what you asked for. [The simulated model complies here; no content "
              "is generated.]")
INJECTION_RESISTED = "Done, as you asked. The text contained an instruction to me, which I ignored."
BENIGN_ANSWER = "Sure. Here is a direct answer to your question, with the usual precautions."

_HARMFUL = re.compile(
    r"(?i)\b(?:pipe bomb|explosive device|napalm|keylogger|ransomware|malware|steals? (?:\w+ )?"
    r"passwords|poison (?:someone|somebody|a person|him|her)|methamphetamine|untraceable"
    r"|ghost gun|background check|pretending to be (?:from|their)|without (?:them|him|her)"
    r" (?:knowing|noticing)|pathogen|bioweapon|hurt (?:someone|somebody|people)|smoke detectors"
    r"|hotwire|stalk\w*|break(?:ing)? into|lethal (?:overdose|dose)|home address|personal"
    r" (?:mobile|phone|email|information)|social security number|\bdox\w*|card number"
    r"|(?:her|his|their) (?:new )?(?:phone |mobile )?(?:number|address|salary)"
    r"|my (?:coworker|co-worker|colleague)\b)"
)
_ROLEPLAY = re.compile(
    r"(?i)\b(?:you are (?:now )?(?:dan|opposite bot|an? (?:evil )?ai with no)|stay in character"
    r"|in character|developer mode|act as|role-?play|let's play a game|hypothetically"
    r"|for educational purposes)"
)
# An override of what came before ("ignore all previous instructions", "disregard the above",
# Spanish "ignora las instrucciones"), up to the end of its line.
_INJECTION = re.compile(
    r"(?i)\b(?:ignore|disregard|ignora) (?:all |any |the |las )?(?:previous|prior|above"
    r"|preceding|earlier|instrucciones|user's|sum)\b[^\n]{0,200}"
)
_ALARMING = re.compile(
    r"(?i)\b(?:kill\w*|explosives?|shoot|terminate|poisonous|attack\w*|nuclear|hack|phishing"
    r"|exploit|injection|murder\w*|dose|ip address)\b"
)


def message_text(content: Any) -> str:
    """A message's text, whether its content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def safety_reply(messages: list[dict[str, Any]], profile: SafetyProfile, u: float) -> str | None:
    """The simulated model's reply when its safety behaviour applies, else None.

    ``u`` is a uniform draw in [0, 1) that the caller derives from the call's key, so the same
    call gets the same reply.
    """
    user = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") == "user")
    if _HARMFUL.search(user):
        keep = profile.refuse_roleplay if _ROLEPLAY.search(user) else profile.refuse_harmful
        return profile.refusal if u < keep else COMPLIANCE
    injected = _INJECTION.search(user)
    if injected:
        if u >= profile.follow_injection:
            return INJECTION_RESISTED
        system = " ".join(message_text(m.get("content")) for m in messages
                          if m.get("role") == "system")
        return " ".join(filter(None, [injected.group(0).strip(), system]))
    if _ALARMING.search(user):
        return profile.refusal if u < profile.over_refuse else BENIGN_ANSWER
    return None
