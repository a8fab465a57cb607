"""Models shipped inside the package (weights and model cards).

Kept free of heavy imports: the fast path that runs a compiled model without PyTorch reads
the names from here.
"""

from pathlib import Path

# name -> (file in this folder, one line for `cellseg-hcs info`)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "nuclei": (
        "nuclei.safetensors",
        "nuclei in DNA-stain images (Hoechst/DAPI), best with nuclei about 30 px "
        "across (others are measured and resampled: --diameter)",
    ),
    "micronuclei": (
        "micronuclei.safetensors",
        "nuclei and micronuclei, each micronucleus with its parent nucleus, in DNA-stain "
        "images (the micronucleus assay); opt-in: see MICRONUCLEI_CARD.md for its error rates",
    ),
}


def is_builtin_name(model: object) -> bool:
    """True when ``model`` names a shipped model. Such a name always means that model, even
    where a file or folder of the same name exists (``./nuclei`` reaches the file)."""
    return isinstance(model, str) and model in BUILTIN_MODELS


def is_model_file(model: object) -> bool:
    """True when ``model`` is to be read as a model file, False when it names a built-in
    model: the one rule by which ``load_model``, the compiled-model cache and the server tell
    them apart. A ``.safetensors`` path or an existing path is a file, unless it is a
    built-in name."""
    if is_builtin_name(model):
        return False
    return Path(str(model)).suffix == ".safetensors" or Path(str(model)).exists()
