"""An optional hook for an external labeller (an LLM, a person, a rule set); off by default.

The probe names latents without any language model (:mod:`recsys.probe.concepts`). A labeller
adds a free-text description per latent from the same evidence, shown on the latent's card
and stored in ``report.json``; it never changes the concept or its confidence, which stay
attribute-based and checkable.

A labeller is anything with ``describe(evidence) -> str | None``, or a plain function of the
evidence. On the command line, ``--labeller package.module:name`` imports ``name``: a function,
an object with ``describe``, or a class (instantiated without arguments); the working folder
is searched too. :func:`prompt` formats the evidence the way OpenAI's "explain neurons" prompts
do, for LLM labellers.

Example::

    def describe(evidence: LatentEvidence) -> str:
        return my_llm.complete(prompt(evidence), max_tokens=64)

    recsys probe runs/lightgcn-ml-100k-... --labeller mylabels:describe
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from recsys.errors import ConfigError


@dataclass(frozen=True)
class LatentEvidence:
    """What is known about one latent when it is described."""

    latent: int
    site: str
    concept: str
    confidence: float
    top_attributes: list[tuple[str, float, float]] = field(default_factory=list)
    """``(attribute, lift, z)``, most significant first."""
    top_items: list[str] = field(default_factory=list)
    """Readable names of the items most tied to the latent."""
    terms: list[str] = field(default_factory=list)
    """TF-IDF terms of the top instances' item text."""


@runtime_checkable
class Labeller(Protocol):
    """Describes a latent in words from its evidence (None: no description)."""

    def describe(self, evidence: LatentEvidence) -> str | None: ...


class FunctionLabeller:
    """A labeller from a function ``evidence -> str | None``."""

    def __init__(self, fn: Callable[[LatentEvidence], str | None]) -> None:
        self.fn = fn

    def __repr__(self) -> str:
        return f"FunctionLabeller({getattr(self.fn, '__qualname__', self.fn)!r})"

    def describe(self, evidence: LatentEvidence) -> str | None:
        return self.fn(evidence)


def load_labeller(spec: str | None) -> Labeller | None:
    """The labeller named ``module:attribute`` (None for None or an empty string)."""
    if not spec:
        return None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"labeller {spec!r} must be of the form package.module:name")
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise ConfigError(f"labeller {spec!r}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module fails while importing (syntax, its own code)
        raise ConfigError(
            f"labeller {spec!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from None
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"labeller {spec!r}: {module_name!r} has no attribute {attr!r}")
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:  # a class that needs arguments, or fails to set itself up
            raise ConfigError(
                f"labeller {spec!r}: cannot create {attr}() without arguments "
                f"({type(exc).__name__}: {exc})"
            ) from None
    if isinstance(target, Labeller):
        return target
    if callable(target):
        return FunctionLabeller(target)
    raise ConfigError(f"labeller {spec!r} is neither callable nor has a describe() method")


def _import(name: str):
    """Import ``name``; failing that, retry with the working folder on the path (console
    scripts do not put it there, and a user's labeller usually lives in their project)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        cwd = os.getcwd()
        if cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(cwd)


def prompt(evidence: LatentEvidence) -> str:
    """An "explain this neuron" prompt for an LLM labeller, from the evidence."""
    lines = [
        "We are studying latents of a sparse autoencoder trained on the "
        f"{evidence.site} representations of a recommendation model.",
        "Summarise in one short phrase what this latent responds to.",
        "Attributes over-represented where it fires (lift, z): "
        + "; ".join(f"{n} ({lift:.1f}x, z={z:.1f})" for n, lift, z in evidence.top_attributes),
    ]
    if evidence.top_items:
        lines.append("Items most tied to it: " + "; ".join(evidence.top_items))
    if evidence.terms:
        lines.append("Frequent title terms: " + ", ".join(evidence.terms))
    lines.append("The latent responds to")
    return "\n".join(lines)
