"""An external labeller for the tests: names a latent after its concept, loudly."""

from recsys.probe.labeller import LatentEvidence


def describe(evidence: LatentEvidence) -> str:
    return f"LABEL<{evidence.concept.upper()}>"


class Shouting:
    def describe(self, evidence: LatentEvidence) -> str:
        return evidence.concept.upper()


not_callable = 42
