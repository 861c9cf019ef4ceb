"""The one place that reads params.yaml: loads it, validates every key, returns typed sections.

The file is read by DVC's own YAML loader (YAML 1.2, ruamel.yaml), so every value means to
the stages what DVC records in dvc.lock and writes with `dvc exp run -S`: `seed: 010` is 10,
`lr: 5e-05` a number, `1:30` text. (PyYAML's YAML 1.1 read these three differently, and DVC's
run cache then served results trained with other values than the ones it recorded.)

Validation runs before any work, so a bad value stops a stage with a message that names the
key, the value and what is allowed, and nothing is written.
"""
from dataclasses import dataclass, field

from dvc.exceptions import DvcException
from dvc.utils.serialize import load_yaml

from sae.datasets import DATASETS, IMAGE_SIZE, TRAIN_IMAGES

PARAMS_FILE = "params.yaml"  # DVC's default params file, at the repository root
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
INITS = ("pretrained", "random")   # start from the previous stage's weights, or a seeded init
TRAINED = ("all", "head")          # fine-tune every layer, or only the classifier (linear probe)
KEEPS = ("last", "best")           # the weights after the last epoch, or after the best one
PHASES = ("pretrain_layer1", "stack_layer2", "finetune_classifier")  # in training order
PRECISIONS = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
N_CLASSES = 10


class ParamsError(ValueError):
    """A params.yaml value that is missing, unknown, of the wrong type or out of range."""


class ParamsChanged(ParamsError):
    """params.yaml changed, in a section the stage declares, while the stage ran."""


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
    """One training phase: its new layer sizes, activations, optimiser and regularisers.
    The defaults are the lecture's: no schedule, no weight decay, no corruption, no dropout."""
    layers: tuple
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    schedule: str = "constant"
    weight_decay: float = 0.0
    encoder_activation: str = "identity"
    decoder_activation: str = "identity"
    corruption: float = 0.0      # autoencoders: fraction of input pixels zeroed (denoising)
    init: str = "pretrained"     # stack_layer2, finetune_classifier: see INITS
    input_dropout: float = 0.0   # finetune_classifier: dropout on the pixels
    dropout: float = 0.0         # finetune_classifier: dropout on every later layer's input
    train: str = "all"           # finetune_classifier: see TRAINED
    labels: int = 0              # finetune_classifier: labelled images, class-balanced (0 = all)
    keep: str = "last"           # finetune_classifier: see KEEPS


@dataclass(frozen=True)
class Split:
    """Which training images a recipe learns from: the last `validation` of them are held out
    to choose settings on (0: none, and fine-tuning reports test accuracy every epoch, as the
    lecture does)."""
    validation: int


@dataclass(frozen=True)
class Evaluate:
    batch_size: int
    examples: int


@dataclass(frozen=True)
class Recipe:
    """One way to train the network: its data split and the three phases' settings."""
    split: Split
    pretrain_layer1: Training
    stack_layer2: Training
    finetune_classifier: Training


@dataclass(frozen=True)
class Params:
    datasets: tuple
    common: Common
    download: Download
    evaluate: Evaluate
    recipes: dict  # name -> Recipe, in params.yaml's order
    raw: dict = field(default=None, compare=False, repr=False)  # the file as read, for guard()

    def recipe(self, name) -> Recipe:
        if name not in self.recipes:
            _fail("recipes", list(self.recipes), f"a list that holds the recipe {name!r}")
        return self.recipes[name]


# A rule is (check(value) -> bool, what is allowed). Integers exclude booleans (YAML's yes/no).
def _integer(low):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
            f"an integer >= {low}")


def _choice(options):
    return (lambda v: v in options, "one of " + ", ".join(options))


MAX_LR = 1e6  # far above any useful rate, and far below float32 overflow
_LR = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_LR,
       f"a number > 0 and <= {MAX_LR:g}")
_FRACTION = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
             "a number in [0, 1)")
MAX_WIDTH = 65536  # units in a layer: 83 times the image size; above it, allocations fail
_LAYERS = (lambda v: isinstance(v, list) and len(v) == 2
           and all(_integer(1)[0](n) and n <= MAX_WIDTH for n in v),
           f"a list of two integers >= 1 and <= {MAX_WIDTH}, [in, out]")
_DATASETS = (lambda v: isinstance(v, list) and len(v) > 0
             and all(isinstance(d, str) and d in DATASETS for d in v) and len(set(v)) == len(v),
             "a non-empty list without repeats of " + ", ".join(DATASETS))
_RECIPES = (lambda v: isinstance(v, list) and len(v) > 0 and len(set(map(str, v))) == len(v)
            and all(isinstance(r, str) and r.isidentifier() for r in v),
            "a non-empty list without repeats of recipe names (letters, digits, _), "
            "each with its own section of overrides")
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed takes
_SEED = (lambda v: _integer(0)[0](v) and v <= MAX_SEED, f"an integer >= 0 and <= {MAX_SEED}")
_FOLDER = (lambda v: v is None or (isinstance(v, str) and v != ""), "null or a folder path")

# A class-balanced labelled subset takes the same number of images from each class.
_LABELS = (lambda v: _integer(0)[0](v) and v % N_CLASSES == 0,
           f"0 (all labels) or a multiple of {N_CLASSES} (the same number from each class)")

_TRAINING = {"layers": _LAYERS, "epochs": _integer(1), "batch_size": _integer(1),
             "optimizer": _choice(OPTIMIZERS), "lr": _LR, "momentum": _FRACTION,
             "schedule": _choice(SCHEDULES), "weight_decay": _FRACTION}
_AUTOENCODER = {**_TRAINING, "encoder_activation": _choice(ACTIVATIONS),
                "decoder_activation": _choice(ACTIVATIONS), "corruption": _FRACTION}

SHARED = {
    "common": {"seed": _SEED, "precision": _choice(PRECISIONS),
               "device": _choice(DEVICES), "train_limit": _integer(0),
               "test_limit": _integer(0)},
    "download": {"source_dir": _FOLDER},
    "evaluate": {"batch_size": _integer(1), "examples": _integer(1)},
}
PHASE_SCHEMA = {
    "pretrain_layer1": _AUTOENCODER,
    "stack_layer2": {**_AUTOENCODER, "init": _choice(INITS)},
    "finetune_classifier": {**_TRAINING, "init": _choice(INITS), "input_dropout": _FRACTION,
                            "dropout": _FRACTION,
                            "train": _choice(TRAINED), "labels": _LABELS,
                            "keep": _choice(KEEPS)},
}
SPLIT_SCHEMA = {"validation": _integer(0)}
_SECTION_TYPES = {"common": Common, "download": Download, "evaluate": Evaluate}


def _fail(key, value, allowed, ok=None):
    """ParamsError naming the key, the value and what is allowed; `ok`, the rule's check,
    tells whether the value written as an integer would pass."""
    hint = ""
    if isinstance(value, str) and _is_number(value):
        # Quoted ("0.1"), or a word Python reads as a number but YAML does not (inf, nan).
        hint = " (YAML reads it as text: write a number without quotes, e.g. 0.001 or 1e-3)"
    elif ok is not None and isinstance(value, float) and value.is_integer() and ok(int(value)):
        # YAML 1.2 reads 1e3 (and 1000.0) as a float, which no integer key accepts.
        hint = (f" (an integer: YAML reads 1e3 or 1000.0 as a float, {value!r}; "
                f"write {int(value)})")
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
            rule = allowed[key] if isinstance(allowed, dict) else None
            what = f"; expected {rule[1]}" if isinstance(rule, tuple) else ""
            raise ParamsError(f"{PARAMS_FILE}: missing key {prefix}{key}{what}")


def _check_section(where, schema, given, make):
    _check_keys(where, given, schema)
    for key, (ok, allowed) in schema.items():
        if not ok(given[key]):
            _fail(f"{where}.{key}", given[key], allowed, ok)
    return make(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def _check_recipe(name, given) -> Recipe:
    """A recipe's split and three phase sections, each complete, whose layer sizes chain."""
    _check_keys(name, given, {"split": SPLIT_SCHEMA, **PHASE_SCHEMA})
    phases = {phase: _check_section(f"{name}.{phase}", schema, given[phase], Training)
              for phase, schema in PHASE_SCHEMA.items()}
    split = _check_section(f"{name}.split", SPLIT_SCHEMA, given["split"], Split)
    recipe = Recipe(split=split, **phases)
    _check_chain(name, recipe)
    if recipe.finetune_classifier.keep == "best" and not split.validation:
        # Without a validation part, "best" would be chosen on the test set.
        _fail(f"{name}.finetune_classifier.keep", "best",
              f"'last' while {name}.split.validation is 0 (the best epoch is chosen on "
              "validation images, never on the test set)")
    return recipe


def _check_chain(name, r: Recipe):
    """Each phase's input must be the previous phase's output: 784 -> 400 -> 256 -> 10."""
    links = [("pretrain_layer1.layers[0]", r.pretrain_layer1.layers[0], IMAGE_SIZE,
              "the image size"),
             ("stack_layer2.layers[0]", r.stack_layer2.layers[0], r.pretrain_layer1.layers[1],
              f"{name}.pretrain_layer1.layers[1]"),
             ("finetune_classifier.layers[0]", r.finetune_classifier.layers[0],
              r.stack_layer2.layers[1], f"{name}.stack_layer2.layers[1]"),
             ("finetune_classifier.layers[1]", r.finetune_classifier.layers[1], N_CLASSES,
              "the number of classes")]
    for key, value, needed, source in links:
        if value != needed:
            _fail(f"{name}.{key}", value, f"{needed} ({source}), so the layer sizes chain")


def parse(raw) -> Params:
    """Validated Params from the mapping that params.yaml holds: the shared sections, and
    one section per recipe named in `recipes`."""
    top = ["datasets", "recipes", *SHARED]
    if isinstance(raw, dict) and "recipes" in raw:
        if not _RECIPES[0](raw["recipes"]) or set(raw["recipes"]) & set(top):
            _fail("recipes", raw["recipes"], _RECIPES[1])
    recipes = raw.get("recipes", []) if isinstance(raw, dict) else []
    _check_keys("", raw, [*top, *recipes])
    if not _DATASETS[0](raw["datasets"]):
        _fail("datasets", raw["datasets"], _DATASETS[1])
    shared = {name: _check_section(name, schema, raw[name], _SECTION_TYPES[name])
              for name, schema in SHARED.items()}
    checked = {name: _check_recipe(name, raw[name]) for name in recipes}
    for name, recipe in checked.items():
        _check_split(name, recipe.split, shared["common"])
    return Params(datasets=tuple(raw["datasets"]), **shared, recipes=checked, raw=raw)


def _check_split(name, split: Split, common: Common):
    """The validation part must leave training images to learn from: fewer than the
    training images that common.train_limit keeps (every one of TRAIN_IMAGES when 0)."""
    limit = min(common.train_limit or TRAIN_IMAGES, TRAIN_IMAGES)
    if split.validation >= limit:
        kept = ("training images common.train_limit keeps" if limit < TRAIN_IMAGES
                else "training images")
        _fail(f"{name}.split.validation", split.validation,
              f"fewer than the {limit} {kept}, so that some are left to train on")


def load(path=PARAMS_FILE) -> Params:
    """Read params.yaml as DVC reads it (its own loader, so the two cannot disagree), and
    validate it. An empty file is an empty mapping, to DVC and here."""
    return parse(_read(path))


def _read(path):
    try:
        return load_yaml(path)
    except (OSError, DvcException) as error:
        # DVC's message says only "corrupted"; the YAML parser's cause says where.
        raise ParamsError(f"cannot read {path}: {error.__cause__ or error}") from error


# ------------------------------------------------------ the params a stage trained with

def declared(stage, recipe):
    """The params.yaml sections (dotted) that a training or evaluate stage declares in
    dvc.yaml (tests/test_params_guard.py checks that the two agree). The other stages need
    no guard(): no param value changes what they write (download's files are verified
    against fixed checksums, check_params writes a constant, reference reads no params)."""
    own = f"{recipe}.{stage}" if stage in PHASES else "evaluate"
    return ("common", f"{recipe}.split", own)


def guard(p: Params, stage, recipe, path=PARAMS_FILE):
    """ParamsChanged unless the sections `stage` declares hold in `path` what they held when
    `p` was loaded. Called by each training stage and evaluate just before it writes its outputs: DVC reads a
    stage's params when it writes dvc.lock, after the stage, so an edit (or a `dvc exp run
    -S`, which rewrites params.yaml before DVC refuses it on the running repro's lock) would
    otherwise pair the new values with outputs made from the old ones, in dvc.lock and in
    the run cache, which then restores the wrong model for those values."""
    now = _read(path)
    for section in declared(stage, recipe):
        change = _first_change(section, _at(p.raw, section), _at(now, section))
        if change:
            key, old, new = change
            raise ParamsChanged(
                f"{path}: {key} changed from {old} to {new} while {stage} ran; nothing was "
                f"written, so DVC records no result for params this run did not use; re-run "
                f"the stage (dvc repro)")


_MISSING = "(missing)"


def _at(raw, dotted):
    """The value at a dotted section of the file's mapping."""
    for key in dotted.split("."):
        raw = raw.get(key, _MISSING) if isinstance(raw, dict) else _MISSING
    return raw


def _first_change(key, old, new):
    """(dotted key, old value, new value) of the first difference, or None; mappings are
    compared key by key (their order means nothing to DVC), everything else by value."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in [*old, *(name for name in new if name not in old)]:
            change = _first_change(f"{key}.{name}",
                                   old.get(name, _MISSING), new.get(name, _MISSING))
            if change:
                return change
        return None
    if old != new or type(old) is not type(new):
        return key, old, new
    return None
