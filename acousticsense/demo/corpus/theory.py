"""Music theory: scales, the chord of each bar, and how a part picks its notes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acousticsense.demo.corpus.dsp import Ctx

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian_dominant": (0, 1, 4, 5, 7, 8, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}


@dataclass(frozen=True)
class Harmony:
    key_pc: int
    scale: tuple[int, ...]
    lead_scale: tuple[int, ...]
    progression: tuple[int, ...]
    rotation: int
    chord_size: int

    def chord(self, bar: int) -> list[int]:
        """Chord tones of ``bar`` as semitones above the key's tonic, stacked in thirds, root first."""
        degree = self.progression[(bar + self.rotation) % len(self.progression)]
        idx = [degree + 2 * k for k in range(self.chord_size)]
        return [self.scale[i % 7] + 12 * (i // 7) for i in idx]

    def place(self, semis: int, lo: int) -> int:
        """Lowest MIDI note >= ``lo`` with the pitch class of ``semis`` above the tonic."""
        pc = (self.key_pc + semis) % 12
        return lo + (pc - lo) % 12


class NotePicker:
    """Turns onsets into MIDI notes according to a part's policy; keeps melodic state across calls."""

    def __init__(self, policy: str, register: tuple[int, int], harmony: Harmony, c: Ctx) -> None:
        self.policy, self.lo, self.hi = policy, register[0], register[1]
        self.h, self.c = harmony, c
        self.prev: float | None = None
        pool = [m for m in range(self.lo, self.hi + 1) if (m - harmony.key_pc) % 12 in harmony.lead_scale]
        self.pool = np.array(pool or [self.lo])
        self.idx = len(self.pool) // 2
        self.arp_order = c.rng.choice(["up", "updown", "random"])

    def _voicing(self, bar: int) -> list[int]:
        tones = self.h.chord(bar)
        root = self.h.place(tones[0], self.lo)
        return [root + t - tones[0] for t in tones]

    def _fit(self, m: float) -> float:
        while m > self.hi:
            m -= 12
        while m < self.lo:
            m += 12
        return m

    def pick(self, bar: int, step: int, k: int, first: bool, last: bool, spb: int) -> list[float]:
        """Notes for the ``k``-th onset of ``bar`` (at ``step``); ``first``/``last`` within the bar."""
        rng, policy = self.c.rng, self.policy
        voicing = self._voicing(bar)
        root = voicing[0]
        if policy == "root":
            return [root]
        if policy == "root_oct":
            return [root + 12 * (k % 2)]
        if policy == "root_fifth":
            return [self._fit(root + 7) if step >= spb // 2 else root]
        if policy == "boogie":
            return [root + (0, 4, 7, 9, 10, 9, 7, 4)[k % 8]]
        if policy == "bassline":
            return [self._fit(root + rng.choice([0, 0, 0, 7, 7, voicing[1] - root, 12, 10]))]
        if policy == "acid":
            return [root + rng.choice([0, 0, 0, 0, 12, 12, 7, 10])]
        if policy == "power":
            return [root, root + 7, root + 12]
        if policy == "chord":
            return list(voicing)
        if policy == "drone":
            tonic = self.h.place(0, self.lo)
            return [tonic, tonic + 7, tonic + 12]
        if policy == "speech":
            return [self.c.speech_midi + rng.normal(0.0, 0.7)]
        if policy == "arp":
            tones = voicing + [v + 12 for v in voicing]
            if self.arp_order == "up":
                return [tones[k % len(tones)]]
            if self.arp_order == "updown":
                cycle = tones + tones[-2:0:-1]
                return [cycle[k % len(cycle)]]
            return [tones[rng.integers(len(tones))]]
        if policy == "walk":
            if first or self.prev is None:
                note: float = root
            elif last:  # chromatic approach to the next bar's root
                target = self.h.place(self.h.chord(bar + 1)[0], self.lo)
                note = self._fit(target + rng.choice([-1, 1]))
            else:
                note = self._fit(self.prev + rng.choice([-5, -3, -2, 2, 3, 4]))
            self.prev = note
            return [note]
        if policy == "melody":
            if rng.random() < 0.08:
                self.idx += int(rng.choice([-4, -3, 3, 4]))
            else:
                self.idx += int(rng.choice([-2, -1, 0, 1, 2], p=[0.15, 0.3, 0.1, 0.3, 0.15]))
            self.idx = int(np.clip(self.idx, 0, len(self.pool) - 1))
            if step % (spb // 4) == 0 and rng.random() < 0.5:  # strong beats lean on chord tones
                pcs = {(self.h.key_pc + t) % 12 for t in self.h.chord(bar)}
                tones = [i for i, m in enumerate(self.pool) if m % 12 in pcs]
                if tones:
                    self.idx = min(tones, key=lambda i: abs(i - self.idx))
            return [float(self.pool[self.idx])]
        raise ValueError(f"unknown note policy {policy!r}")
