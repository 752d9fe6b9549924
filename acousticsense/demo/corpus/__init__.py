"""A synthetic, labelled music corpus: one procedural "recipe" per genre of ``GENRES``.

Real genre data sets cannot ship with the project, so the demo trains and evaluates on music rendered
here. Each genre is a recipe -- tempo range, a drum pattern on a 12- or 16-step grid, a bass line
behaviour, chord and lead instruments with their registers, swing, rubato and reverb -- and every clip
draws its own key, tempo (with +-6 % jitter), scale, chord progression, pattern variations, detune,
brightness, mix levels and loudness, so the classes are distinct but overlap a little.

Everything is NumPy (plus ``scipy.signal`` filters): a 10 s clip at 22,050 Hz renders in a few tens of
milliseconds on one core.

Command line::

    python -m acousticsense.demo.corpus --output data/synth --per-class 50 --seed 0 --formats wav,flac

Modules, in the order a clip is made: ``recipes`` (what makes each genre), ``theory`` (scales, chords,
note choice), ``dsp`` (filters, envelopes, oscillators, effects), ``instruments`` and ``drums`` (the
sounds), ``render`` (one clip), ``noise`` (optional noise at an SNR), ``files`` (the corpus on disk),
``cli`` (the command line).
"""

from acousticsense.demo.corpus.cli import main
from acousticsense.demo.corpus.files import AUDIO_FORMATS, genre_slug, write_corpus
from acousticsense.demo.corpus.noise import add_noise
from acousticsense.demo.corpus.render import synthesize_clip

__all__ = ["AUDIO_FORMATS", "add_noise", "genre_slug", "main", "synthesize_clip", "write_corpus"]
