"""The one place that reads params.yaml: loads it, validates every key, returns typed sections.

Validation runs before any work, so a bad value stops a stage with a message that names the
key, the value and what is allowed, and nothing is written.
"""
from dataclasses import dataclass
from pathlib import Path

import yaml

from sae.datasets import DATASETS, IMAGE_SIZE

PARAMS_FILE = "params.yaml"  # DVC's default params file, at the repository root
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
N_CLASSES = 10


class ParamsError(ValueError):
    """A params.yaml value that is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Common:
    seed: int
    precision: str
    device: str
    train_limit: int
    test_limit: int


@dataclass(frozen=True)
class Download:
    source_dir: str | None


@dataclass(frozen=True)
class Training:
    """One training phase: its new layer sizes, activations and optimiser."""
    layers: tuple
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    encoder_activation: str = "identity"
    decoder_activation: str = "identity"


@dataclass(frozen=True)
class Evaluate:
    batch_size: int
    examples: int


@dataclass(frozen=True)
class Params:
    datasets: tuple
    common: Common
    download: Download
    pretrain_layer1: Training
    stack_layer2: Training
    finetune_classifier: Training
    evaluate: Evaluate


# A rule is (check(value) -> bool, what is allowed). Integers exclude booleans (YAML's yes/no).
def _integer(low):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
            f"an integer >= {low}")


def _choice(options):
    return (lambda v: v in options, "one of " + ", ".join(options))


MAX_LR = 1e6  # far above any useful rate, and far below float32 overflow
_LR = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_LR,
       f"a number > 0 and <= {MAX_LR:g}")
_MOMENTUM = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
             "a number in [0, 1)")
_LAYERS = (lambda v: isinstance(v, list) and len(v) == 2
           and all(_integer(1)[0](n) for n in v), "a list of two integers >= 1, [in, out]")
_DATASETS = (lambda v: isinstance(v, list) and len(v) > 0
             and all(isinstance(d, str) and d in DATASETS for d in v) and len(set(v)) == len(v),
             "a non-empty list without repeats of " + ", ".join(DATASETS))
_FOLDER = (lambda v: v is None or (isinstance(v, str) and v != ""), "null or a folder path")

_TRAINING = {"layers": _LAYERS, "epochs": _integer(1), "batch_size": _integer(1),
             "optimizer": _choice(OPTIMIZERS), "lr": _LR, "momentum": _MOMENTUM}
_AUTOENCODER = {**_TRAINING, "encoder_activation": _choice(ACTIVATIONS),
                "decoder_activation": _choice(ACTIVATIONS)}

SCHEMA = {
    "common": {"seed": _integer(0), "precision": _choice(PRECISIONS),
               "device": _choice(DEVICES), "train_limit": _integer(0),
               "test_limit": _integer(0)},
    "download": {"source_dir": _FOLDER},
    "pretrain_layer1": _AUTOENCODER,
    "stack_layer2": _AUTOENCODER,
    "finetune_classifier": _TRAINING,
    "evaluate": {"batch_size": _integer(1), "examples": _integer(1)},
}
_SECTION_TYPES = {"common": Common, "download": Download, "pretrain_layer1": Training,
                  "stack_layer2": Training, "finetune_classifier": Training,
                  "evaluate": Evaluate}


def _fail(key, value, allowed):
    hint = ""
    if isinstance(value, str) and _is_number(value):
        # YAML 1.1 reads 1e-3 (no dot) as text; 1.0e-3 is a number.
        hint = f" (YAML reads {value} as text: write it with a dot, e.g. 1.0e-3)"
    raise ParamsError(f"{PARAMS_FILE}: {key} = {value!r} is not allowed; expected {allowed}{hint}")


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_keys(where, given, allowed):
    if not isinstance(given, dict):
        _fail(where or "the file", given, "a mapping of " + ", ".join(allowed))
    prefix, scope = (f"{where}.", f" in {where}") if where else ("", "")
    for key in given:
        if key not in allowed:
            raise ParamsError(f"{PARAMS_FILE}: unknown key {prefix}{key!s}; "
                              f"allowed keys{scope}: {', '.join(allowed)}")
    for key in allowed:
        if key not in given:
            what = f"; expected {allowed[key][1]}" if isinstance(allowed, dict) else ""
            raise ParamsError(f"{PARAMS_FILE}: missing key {prefix}{key}{what}")


def _check_section(name, given):
    _check_keys(name, given, SCHEMA[name])
    for key, (ok, allowed) in SCHEMA[name].items():
        if not ok(given[key]):
            _fail(f"{name}.{key}", given[key], allowed)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return _SECTION_TYPES[name](**values)


def _check_chain(p: Params):
    """Each phase's input must be the previous phase's output: 784 -> 400 -> 256 -> 10."""
    links = [("pretrain_layer1.layers[0]", p.pretrain_layer1.layers[0], IMAGE_SIZE,
              "the image size"),
             ("stack_layer2.layers[0]", p.stack_layer2.layers[0], p.pretrain_layer1.layers[1],
              "pretrain_layer1.layers[1]"),
             ("finetune_classifier.layers[0]", p.finetune_classifier.layers[0],
              p.stack_layer2.layers[1], "stack_layer2.layers[1]"),
             ("finetune_classifier.layers[1]", p.finetune_classifier.layers[1], N_CLASSES,
              "the number of classes")]
    for key, value, needed, source in links:
        if value != needed:
            _fail(key, value, f"{needed} ({source}), so the layer sizes chain")


def parse(raw) -> Params:
    """Validated Params from the mapping that params.yaml holds."""
    _check_keys("", raw, ["datasets", *SCHEMA])
    if not _DATASETS[0](raw["datasets"]):
        _fail("datasets", raw["datasets"], _DATASETS[1])
    sections = {name: _check_section(name, raw[name]) for name in SCHEMA}
    params = Params(datasets=tuple(raw["datasets"]), **sections)
    _check_chain(params)
    return params


def load(path=PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    try:
        raw = yaml.safe_load(Path(path).read_bytes())
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"cannot read {path}: {error}") from error
    return parse(raw)
