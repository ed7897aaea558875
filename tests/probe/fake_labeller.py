"""An external labeller for the tests: names a latent after its concept, loudly."""

from recsys.probe.labeller import LatentEvidence


def describe(evidence: LatentEvidence) -> str:
    return f"LABEL<{evidence.concept.upper()}>"


class Shouting:
    def describe(self, evidence: LatentEvidence) -> str:
        return evidence.concept.upper()


not_callable = 42


def returns_dict(evidence: LatentEvidence) -> dict:
    """An LLM wrapper that hands back its client's response object instead of the text."""
    return {"text": evidence.concept}


class NeedsKey:
    """A labeller class that cannot be made without arguments (an API key)."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def describe(self, evidence: LatentEvidence) -> str:
        return evidence.concept


def fails(evidence: LatentEvidence) -> str:
    """An LLM wrapper whose service is down: every call raises."""
    raise ConnectionError(f"service unavailable (latent {evidence.latent})")
