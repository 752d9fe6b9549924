"""Genre recipes: the drum patterns, parts, harmony and mix settings that make each genre of ``GENRES``.

Data only: every clip draws its own randomness around these values (see ``render``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    """One drum voice: per-step onset probabilities over a bar ('0'-'9' tenths, 'x' certain)."""

    voice: str
    pattern: str
    gain_db: float = 0.0
    variation: float = 0.1  # per bar, chance that each step is re-drawn from its probability
    presence: float = 1.0  # chance that the voice plays at all in a clip
    rolls: float = 0.0  # chance that a hit becomes a 2- or 3-stroke roll (trap hats)


@dataclass(frozen=True)
class Part:
    """One pitched part: rhythm as in :class:`Hit`, plus how notes are chosen and rendered."""

    instrument: str
    pattern: str
    notes: str  # note policy, see NotePicker
    register: tuple[int, int]  # MIDI range
    length: float = 1.0  # gate in grid steps; 0 holds each note until the next onset
    gain_db: float = 0.0
    variation: float = 0.1
    presence: float = 1.0
    lock: str | None = None  # copy the onsets of this drum voice (bass following the kick)
    lowpass_hz: float | None = None
    send: float = 0.2  # reverb send
    echo: float = 0.0  # feedback of a dotted-eighth echo
    sidechain: float = 0.0  # depth of the gain dip after each kick


@dataclass(frozen=True)
class Recipe:
    """Everything that makes a genre; per-clip randomness is drawn around these values."""

    bpm: tuple[float, float]
    scales: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]  # scale degrees, one chord per bar
    drums: tuple[Hit, ...] = ()
    parts: tuple[Part, ...] = ()
    steps_per_bar: int = 16  # 16 = straight sixteenths, 12 = triplet eighths (shuffle, 12/8)
    chord_size: int = 3
    lead_scale: str | None = None  # melody scale when it differs from the harmony's
    swing: float = 0.0  # delay of the off sixteenths, in steps
    rubato: float = 0.0  # relative depth of slow tempo fluctuation
    humanize_ms: float = 4.0
    reverb_s: float = 1.0  # RT60
    drum_send: float = 0.1
    lofi_hz: float | None = None  # low-pass on the whole mix (sampled, dusty records)
    vinyl: bool = False
    master_drive: float = 0.0

    def __post_init__(self) -> None:
        for item in (*self.drums, *self.parts):
            if len(item.pattern) != self.steps_per_bar:
                raise ValueError(f"pattern {item.pattern!r} does not have {self.steps_per_bar} steps")


_FOUR = "x000x000x000x000"
_BACKBEAT = "0000x0000000x000"
_EIGHTHS = "x0x0x0x0x0x0x0x0"
_OFFBEATS = "00x000x000x000x0"
_BAR = "x000000000000000"
_HALF_BARS = "x0000000x0000000"

RECIPES: dict[str, Recipe] = {
    "Blues": Recipe(
        bpm=(68, 100),
        steps_per_bar=12,
        scales=("mixolydian",),
        lead_scale="blues",
        progressions=((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), (0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4)),
        chord_size=4,
        humanize_ms=8,
        reverb_s=0.9,
        drums=(
            Hit("kick", "x00000x00200", -3),
            Hit("snare", "000x00000x00", -5),
            Hit("hat", "x07x07x07x07", -12),
        ),
        parts=(
            Part("upright", "x07x07x07x07", "boogie", (36, 48), length=2.0, gain_db=-2, send=0.05),
            Part("organ", "000x00000x00", "chord", (55, 67), length=2.5, gain_db=-7, presence=0.7),
            Part("blues_guitar", "704604705604", "melody", (60, 79), length=0, gain_db=-3, lowpass_hz=3000),
        ),
    ),
    "Classical": Recipe(
        bpm=(60, 100),
        scales=("major", "harmonic_minor"),
        progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 1, 4, 0)),
        rubato=0.07,
        humanize_ms=12,
        reverb_s=2.2,
        parts=(
            Part("strings", _HALF_BARS, "root", (36, 48), length=8, gain_db=-6, lowpass_hz=1500, send=0.4),
            Part("strings", _BAR, "chord", (55, 67), length=16, gain_db=-10, lowpass_hz=2500, send=0.5),
            Part("piano", _EIGHTHS, "arp", (60, 76), length=3, gain_db=-8, presence=0.6, send=0.4),
            Part(
                "violin",
                "9020602090206020",
                "melody",
                (67, 88),
                length=0,
                gain_db=-6,
                lowpass_hz=4000,
                presence=0.85,
                send=0.5,
            ),
        ),
    ),
    "Jazz": Recipe(
        bpm=(120, 190),
        steps_per_bar=12,
        scales=("major",),
        progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)),
        chord_size=4,
        humanize_ms=10,
        reverb_s=1.1,
        drums=(
            Hit("ride", "x00x0xx00x0x", -9),
            Hit("hat", "000x00000x00", -16),
            Hit("kick", "300000000200", -12, variation=0.3),
            Hit("brush", "002000300020", -14, variation=0.4),
        ),
        parts=(
            Part("upright", "x00x00x00x00", "walk", (33, 50), length=2.5, gain_db=-1, send=0.05),
            Part("epiano", "400030040003", "chord", (52, 67), length=2, gain_db=-10, variation=0.4),
            Part("sax", "704606704606", "melody", (58, 79), length=0, gain_db=-7, lowpass_hz=3500, presence=0.8),
        ),
    ),
    "Folk": Recipe(
        bpm=(84, 124),
        scales=("major", "mixolydian"),
        lead_scale="major_pent",
        progressions=((0, 3, 0, 4), (0, 4, 5, 3), (0, 0, 3, 4)),
        rubato=0.02,
        humanize_ms=10,
        reverb_s=1.2,
        drums=(Hit("tamb", _BACKBEAT, -16, presence=0.5),),
        parts=(
            Part("pluck", _HALF_BARS, "root_fifth", (40, 52), length=6, gain_db=-4),
            Part("pluck", _EIGHTHS, "arp", (52, 71), length=5, gain_db=-8),
            Part("flute", "8000400060004000", "melody", (72, 88), length=0, gain_db=-16, presence=0.7),
        ),
    ),
    "Pop": Recipe(
        bpm=(96, 128),
        scales=("major",),
        lead_scale="major_pent",
        progressions=((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4)),
        reverb_s=1.0,
        drums=(
            Hit("kick", "x0000020x0000000", -3),
            Hit("snare", _BACKBEAT, -4),
            Hit("clap", _BACKBEAT, -9),
            Hit("hat", _EIGHTHS, -13),
            Hit("crash", "3000000000000000", -15, variation=1.0),
        ),
        parts=(
            Part("saw_bass", _EIGHTHS, "root", (36, 48), length=1.6, gain_db=-4, lowpass_hz=900, send=0.0),
            Part("pad", _HALF_BARS, "chord", (60, 72), length=8, gain_db=-10, lowpass_hz=3000, send=0.3),
            Part("piano", _OFFBEATS, "chord", (60, 72), length=1.5, gain_db=-12, presence=0.5),
            Part("vox", "8040604080406040", "melody", (64, 79), length=0, gain_db=-3, send=0.3),
        ),
    ),
    "Electronic": Recipe(
        bpm=(120, 134),
        scales=("aeolian", "dorian"),
        progressions=((0, 5, 2, 6), (0, 3, 5, 4), (0, 0, 5, 6)),
        humanize_ms=0.5,
        reverb_s=1.0,
        drum_send=0.05,
        drums=(
            Hit("kick", _FOUR, -1, variation=0.0),
            Hit("clap", _BACKBEAT, -9),
            Hit("ohat", _OFFBEATS, -12),
            Hit("hat", "3737373737373737", -16),
        ),
        parts=(
            Part("acid", "9079079080790970", "acid", (36, 48), length=0.8, gain_db=-2, presence=0.6, send=0.05),
            Part(
                "saw_bass",
                _OFFBEATS,
                "root",
                (36, 48),
                length=1.5,
                gain_db=-5,
                lowpass_hz=700,
                presence=0.6,
                send=0.0,
            ),
            Part(
                "pad",
                _BAR,
                "chord",
                (57, 72),
                length=16,
                gain_db=-10,
                lowpass_hz=2500,
                sidechain=0.7,
                send=0.3,
            ),
            Part(
                "pluck_synth",
                "x0xxx0xxx0xxx0xx",
                "arp",
                (69, 84),
                length=1.5,
                gain_db=-12,
                echo=0.35,
                presence=0.7,
                send=0.3,
            ),
        ),
    ),
    "Disco": Recipe(
        bpm=(110, 126),
        scales=("dorian", "aeolian", "major"),
        progressions=((0, 3), (0, 3, 0, 4), (1, 4)),
        chord_size=4,
        reverb_s=0.8,
        drums=(
            Hit("kick", _FOUR, -4, variation=0.0),
            Hit("snare", _BACKBEAT, -7),
            Hit("ohat", _OFFBEATS, -9),
            Hit("hat", _EIGHTHS, -15),
        ),
        parts=(
            Part(
                "pluck_bass",
                _EIGHTHS,
                "root_oct",
                (33, 45),
                length=1.5,
                gain_db=-3,
                lowpass_hz=1800,
                send=0.0,
            ),
            Part("scratch", "5858585858585858", "chord", (60, 72), length=0.4, gain_db=-4),
            Part("strings", _HALF_BARS, "chord", (67, 79), length=7, gain_db=-13, lowpass_hz=5000, send=0.35),
            Part(
                "brass",
                "000000500000x000",
                "chord",
                (60, 74),
                length=1,
                gain_db=-2,
                lowpass_hz=3000,
                presence=0.5,
            ),
        ),
    ),
    "Rock": Recipe(
        bpm=(100, 150),
        scales=("mixolydian", "aeolian", "major"),
        lead_scale="minor_pent",
        progressions=((0, 6, 3, 0), (0, 5, 6, 0), (0, 3, 4, 3)),
        reverb_s=0.7,
        drum_send=0.12,
        drums=(
            Hit("kick", "x0000000x0x00000", -1),
            Hit("snare", _BACKBEAT, -2),
            Hit("hat", _EIGHTHS, -11),
            Hit("crash", "4000000000000000", -11, variation=1.0),
        ),
        parts=(
            Part("saw_bass", _EIGHTHS, "root", (36, 48), length=1.8, gain_db=-4, lowpass_hz=1000, send=0.0),
            Part("crunch_guitar", _EIGHTHS, "power", (40, 52), length=2, gain_db=-7, lowpass_hz=3500),
            Part(
                "blues_guitar",
                "3000200030002000",
                "melody",
                (64, 81),
                length=0,
                gain_db=0,
                lowpass_hz=3500,
                presence=0.5,
            ),
        ),
    ),
    "Hip-Hop": Recipe(
        bpm=(80, 98),
        scales=("dorian", "aeolian"),
        progressions=((0, 0, 3, 3), (0, 5, 0, 5), (1, 0, 1, 0)),
        chord_size=4,
        swing=0.22,
        humanize_ms=8,
        reverb_s=0.7,
        lofi_hz=5000,
        vinyl=True,
        drums=(
            Hit("kick", "x000000x0x000000", -1, variation=0.15),
            Hit("snare", _BACKBEAT, -2),
            Hit("hat", "x0x2x0x0x0x2x0x0", -12),
        ),
        parts=(
            Part("sine_bass", _BAR, "root", (33, 45), length=0, gain_db=-3, lock="kick", send=0.0),
            Part("epiano", _HALF_BARS, "chord", (55, 67), length=6, gain_db=-10, lowpass_hz=3000),
            Part("speech", "7060706070607060", "speech", (0, 0), length=1.2, gain_db=0, send=0.1),
        ),
    ),
    "Rap": Recipe(
        bpm=(130, 160),
        scales=("aeolian", "harmonic_minor", "phrygian"),
        progressions=((0, 0, 5, 5), (0, 5, 6, 4), (0, 1, 0, 1)),
        humanize_ms=1,
        reverb_s=0.6,
        drums=(
            Hit("kick", "x000000000x00x00", -1, variation=0.25),
            Hit("clap", "00000000x0000000", -3, variation=0.0),
            Hit("hat", "xxxxxxxxxxxxxxxx", -13, rolls=0.15),
            Hit("ohat", "0000000000000050", -15),
        ),
        parts=(
            Part("sub808", _BAR, "root", (29, 41), length=0, gain_db=-1, lock="kick", send=0.0),
            Part("bell", "x000300050003000", "melody", (72, 86), length=3, gain_db=-9, presence=0.7, send=0.3),
            Part("speech", "9393939393939393", "speech", (0, 0), length=0.9, gain_db=1, send=0.1),
        ),
    ),
    "Metal": Recipe(
        bpm=(150, 200),
        scales=("phrygian", "aeolian", "harmonic_minor"),
        progressions=((0, 1, 0, 6), (0, 0, 1, 0), (0, 5, 6, 0)),
        humanize_ms=2,
        reverb_s=0.4,
        drum_send=0.05,
        master_drive=1.5,
        drums=(
            Hit("kick", "x9x9x9x9x9x9x9x9", -3),
            Hit("snare", _BACKBEAT, -2),
            Hit("hat", _EIGHTHS, -10),
            Hit("crash", "6000000060000000", -12, variation=1.0),
        ),
        parts=(
            Part(
                "metal_guitar",
                "x8x8x8x8x8x8x8x8",
                "power",
                (28, 40),
                length=0.8,
                gain_db=-3,
                lowpass_hz=4500,
                send=0.08,
            ),
            Part("saw_bass", _EIGHTHS, "root", (28, 40), length=1.8, gain_db=-6, lowpass_hz=700, send=0.0),
        ),
    ),
    "R&B": Recipe(
        bpm=(64, 92),
        scales=("major", "dorian"),
        progressions=((3, 2, 1, 4), (1, 4, 0, 0), (0, 5, 3, 4)),
        chord_size=5,
        swing=0.25,
        humanize_ms=8,
        reverb_s=1.4,
        drums=(
            Hit("kick", "x000000x00x00000", -4),
            Hit("rim", _BACKBEAT, -8),
            Hit("clap", _BACKBEAT, -10),
            Hit("hat", "x3x3x3x3x3x3x3x3", -16, rolls=0.05),
        ),
        parts=(
            Part("sine_bass", _BAR, "root", (33, 45), length=0, gain_db=-3, lock="kick", send=0.0),
            Part("epiano", _HALF_BARS, "chord", (52, 67), length=8, gain_db=-9),
            Part("vox", "7040705070407050", "melody", (62, 79), length=0, gain_db=-5, send=0.35),
        ),
    ),
    "Reggae": Recipe(
        bpm=(66, 88),
        scales=("major", "dorian"),
        progressions=((0, 3), (0, 4, 3, 4), (0, 5, 3, 4)),
        swing=0.12,
        humanize_ms=6,
        reverb_s=1.0,
        drums=(
            Hit("kick", "00000000x0000000", -2, variation=0.05),
            Hit("rim", "00000000x0000000", -6, variation=0.05),
            Hit("hat", _EIGHTHS, -13),
        ),
        parts=(
            Part(
                "sine_bass",
                "x0070060x0060600",
                "bassline",
                (33, 45),
                length=1.5,
                gain_db=-1,
                lowpass_hz=400,
                send=0.0,
            ),
            Part("skank", _BACKBEAT, "chord", (60, 72), length=0.6, gain_db=3, echo=0.4, variation=0.0),
            Part("organ", "0x000x000x000x00", "chord", (55, 67), length=0.5, gain_db=-9, presence=0.6),
        ),
    ),
    "World": Recipe(
        bpm=(80, 120),
        steps_per_bar=12,
        scales=("phrygian_dominant", "harmonic_minor", "phrygian"),
        progressions=((0,), (0, 0, 6, 0), (0, 1, 0, 0)),
        humanize_ms=10,
        reverb_s=1.3,
        drums=(
            Hit("tabla_lo", "x00030x00300", -4),
            Hit("tabla_hi", "x07707x07707", -7, rolls=0.05),
        ),
        parts=(
            Part(
                "drone",
                "x00000000000",
                "drone",
                (45, 57),
                length=12,
                gain_db=-10,
                variation=0.0,
                lowpass_hz=2000,
                send=0.3,
            ),
            Part("sitar", "704050704060", "melody", (60, 79), length=2, gain_db=-5, send=0.3),
        ),
    ),
    "Latin": Recipe(
        bpm=(90, 124),
        scales=("harmonic_minor", "dorian", "major"),
        progressions=((0, 3, 4, 0), (0, 4), (0, 3, 4, 4)),
        reverb_s=0.9,
        drums=(
            Hit("clave", "x00x00x000x0x000", -8, variation=0.0),
            Hit("conga_hi", "0000x0xx0000x0xx", -8),
            Hit("conga_lo", _HALF_BARS, -9),
            Hit("cowbell", _FOUR, -13, presence=0.6),
            Hit("shaker", _EIGHTHS, -16),
            Hit("kick", "x00000000000x000", -10, presence=0.5),
        ),
        parts=(
            Part("upright", "000x00x00000x000", "root_fifth", (36, 48), length=0, gain_db=-2, send=0.05),
            Part("piano", "x0xx0x0xx0x0x0xx", "arp", (60, 79), length=1.5, gain_db=-8),
            Part(
                "brass",
                "0000000000x000x0",
                "chord",
                (60, 74),
                length=1,
                gain_db=0,
                lowpass_hz=3500,
                presence=0.6,
            ),
        ),
    ),
    "Country": Recipe(
        bpm=(90, 130),
        scales=("major",),
        lead_scale="major_pent",
        progressions=((0, 3, 4, 0), (0, 0, 3, 4), (0, 4, 3, 0)),
        reverb_s=0.9,
        drums=(
            Hit("kick", _HALF_BARS, -5),
            Hit("snare", _BACKBEAT, -8),
            Hit("shaker", "x6x6x6x6x6x6x6x6", -16),
        ),
        parts=(
            Part("upright", _HALF_BARS, "root_fifth", (36, 48), length=3, gain_db=-2, send=0.05),
            Part("pluck", "0030x0300030x030", "chord", (52, 67), length=3, gain_db=-2),
            Part("steel", "6000300060003000", "melody", (64, 81), length=0, gain_db=-7, presence=0.8),
        ),
    ),
}
