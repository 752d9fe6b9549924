# The core's public names, written once. ``__init__.py`` hands this file to ``lazy_loader.attach_stub``,
# which imports each name from its module on first use; type checkers and IDEs read these imports as
# they are. Add a name here and it is exported (``tests/core/test_core_has_no_ray.py`` checks each one
# resolves). Only ``from .module import name as name`` lines: lazy_loader refuses any other
# import form, and ``as name`` is how a stub says "re-exported" (PEP 484; ruff and type checkers honour it).

from .audio import (
    AudioInfo as AudioInfo,
    DecodedExcerpt as DecodedExcerpt,
    audio_info as audio_info,
    choose_excerpt as choose_excerpt,
    choose_segments as choose_segments,
    decode_segments as decode_segments,
    downmix as downmix,
    read_excerpt as read_excerpt,
    resample as resample,
)
from .bundle import (
    DEFAULT_BUNDLE as DEFAULT_BUNDLE,
    NAMED_BUNDLES as NAMED_BUNDLES,
    ModelBundle as ModelBundle,
    default_bundle_uri as default_bundle_uri,
    load_bundle as load_bundle,
    resolve_bundle_uri as resolve_bundle_uri,
    save_bundle as save_bundle,
    write_bundle as write_bundle,
)
from .cache import (
    SpectrogramCache as SpectrogramCache,
)
from .config import (
    GENRES as GENRES,
    FeatureConfig as FeatureConfig,
    HeadConfig as HeadConfig,
    PostprocessConfig as PostprocessConfig,
)
from .errors import (
    AcousticSenseError as AcousticSenseError,
    AudioDecodeError as AudioDecodeError,
    BundleError as BundleError,
    ConfigError as ConfigError,
    StageError as StageError,
)
from .extract import (
    ExcerptFeaturizer as ExcerptFeaturizer,
    FeaturizedAudio as FeaturizedAudio,
    PreparedAudio as PreparedAudio,
    segment_windows as segment_windows,
)
from .features import (
    LogMel as LogMel,
    frame_windows as frame_windows,
    front_end as front_end,
    n_frames as n_frames,
)
from .inference import (
    WindowPredictor as WindowPredictor,
    logits_per_file as logits_per_file,
    resolve_precision as resolve_precision,
    select_device as select_device,
)
from .models import (
    MODEL_PRESETS as MODEL_PRESETS,
    ASTClassifier as ASTClassifier,
    ASTConfig as ASTConfig,
    ModelConfig as ModelConfig,
    MusicnnConfig as MusicnnConfig,
    ViTConfig as ViTConfig,
    WindowClassifier as WindowClassifier,
    build_model as build_model,
    model_config_for as model_config_for,
)
from .options import (
    DEVICES as DEVICES,
    OVERRIDES as OVERRIDES,
    PRECISIONS as PRECISIONS,
    Device as Device,
    Override as Override,
    Precision as Precision,
    check_overrides as check_overrides,
)
from .postprocess import (
    FilePrediction as FilePrediction,
    OutputHead as OutputHead,
    aggregate as aggregate,
    predict_file as predict_file,
    softmax as softmax,
    top_k as top_k,
)
from .record import (
    FileRecord as FileRecord,
    record_fields as record_fields,
    rms_dbfs as rms_dbfs,
)
from .storage import (
    check_writable as check_writable,
    filesystem as filesystem,
    is_remote as is_remote,
    join_uri as join_uri,
    list_files as list_files,
    open_binary as open_binary,
    reaching as reaching,
)

__version__: str
