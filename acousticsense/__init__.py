"""AcousticSense core: audio excerpts -> spectrogram windows -> a registered model family -> per-file predictions.

Plain Python and PyTorch; no Ray. The batch job (``pipelines/``) and the service (``serving/``)
wire these callables together.

The public names are listed once, in ``__init__.pyi``; ``lazy_loader`` (SPEC 1) imports each from its
module on first use, so ``import acousticsense.storage`` (what the batch writer's worker needs) does
not pay for torch, while type checkers read the stub's ordinary imports.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
