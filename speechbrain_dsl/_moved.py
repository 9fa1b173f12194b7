"""Old import paths of the 0.1 layout, kept loading for one release.

Models packaged or runs started before the package was reshaped name classes by
their old paths in ``hyperparams.yaml`` (``speechbrain_dsl.checkpoints.
AtomicCheckpointer``, ``speechbrain_dsl.lobes.soundstream.SoundStreamDiscriminator``).
Importing an old module path gives the new module, and an old attribute gives the
moved object, each with a ``DeprecationWarning`` that names the new path.

Example
-------
>>> import sys, warnings
>>> _ = sys.modules.pop("speechbrain_dsl.checkpoints", None)
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     from speechbrain_dsl.checkpoints import AtomicCheckpointer
>>> AtomicCheckpointer.__module__
'speechbrain_dsl.training.checkpoints'
>>> [str(w.message).split(";")[0] for w in caught]
['speechbrain_dsl.checkpoints moved to speechbrain_dsl.training.checkpoints']
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED_MODULES = {
    "speechbrain_dsl.streaming": "speechbrain_dsl.inference.streaming",
    "speechbrain_dsl.export": "speechbrain_dsl.inference.export",
    "speechbrain_dsl.inference.codec": "speechbrain_dsl.inference.interface",
    "speechbrain_dsl.metrics": "speechbrain_dsl.evaluation.metrics",
    "speechbrain_dsl.efficiency": "speechbrain_dsl.evaluation.efficiency",
    "speechbrain_dsl.calibration": "speechbrain_dsl.evaluation.calibration",
    "speechbrain_dsl.plots": "speechbrain_dsl.evaluation.plots",
    "speechbrain_dsl.embedding_cache": "speechbrain_dsl.probing.embedding_cache",
    "speechbrain_dsl.checkpoints": "speechbrain_dsl.training.checkpoints",
    "speechbrain_dsl.recipe_utils": "speechbrain_dsl.training.recipe_utils",
    "speechbrain_dsl.retrofit": "speechbrain_dsl.training.retrofit",
}

# (old module, name) -> new module
MOVED_NAMES = {
    **{
        ("speechbrain_dsl.nnet.dsl", n): "speechbrain_dsl.nnet.segments"
        for n in ("length_mask", "segment_mean")
    },
    **{
        ("speechbrain_dsl.nnet.dsl", n): "speechbrain_dsl.nnet.gated_compression"
        for n in ("GatedCompression", "GatedNetwork", "GatedCompressionLoss")
    },
    **{
        ("speechbrain_dsl.nnet.conv", n): "speechbrain_dsl.lobes.soundstream"
        for n in ("ResidualUnit", "EncoderBlock", "DecoderBlock", "ELUConv")
    },
    **{
        ("speechbrain_dsl.lobes.soundstream", n): "speechbrain_dsl.lobes.discriminators"
        for n in ("WaveformDiscriminator", "STFTDiscriminator", "SoundStreamDiscriminator")
    },
}


def _warn(old, new):
    warnings.warn(
        f"{old} moved to {new}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


def moved_attribute(module, name):
    """The object ``name`` that moved out of ``module``, for a module ``__getattr__``."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    _warn(f"{module}.{name}", f"{new}.{name}")
    return getattr(importlib.import_module(new), name)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new):
        self.new = new

    def create_module(self, spec):
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module):
        pass  # already executed under its new name

    def get_code(self, fullname):
        """``python -m <old path>`` runs the new module's code as ``__main__``."""
        _warn(fullname, self.new)
        return importlib.util.find_spec(self.new).loader.get_code(self.new)

    def is_package(self, fullname):
        return False


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install():
    """Lets the old module paths import (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
