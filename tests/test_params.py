"""params.yaml validation: the defaults parse, and every bad value stops with a message that
names the dotted key, the value and what is allowed, before a stage writes anything."""
import copy
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from sae import params
from sae.params import ParamsError
from tests.conftest import DEFAULT_PARAMS, ROOT, params_with, run_stage


def error_of(raw):
    with pytest.raises(ParamsError) as caught:
        params.parse(raw)
    return str(caught.value)


# ---------------------------------------------------------------- the defaults


def test_default_params_file_parses_to_the_lecture_settings():
    p = params.load(ROOT / "params.yaml")
    assert p.datasets == ("mnist", "fashion_mnist")
    lecture = p.recipe("lecture")
    assert lecture.pretrain_layer1.layers == (784, 400)
    assert lecture.stack_layer2.layers == (400, 256)
    assert lecture.finetune_classifier.layers == (256, 10)
    layer1 = lecture.pretrain_layer1
    assert (layer1.encoder_activation, layer1.decoder_activation) == \
        ("tanh", "sigmoid")
    for phase, lr in ((lecture.pretrain_layer1, 0.98), (lecture.stack_layer2, 0.98),
                      (lecture.finetune_classifier, 0.1)):
        assert (phase.epochs, phase.batch_size, phase.optimizer, phase.lr, phase.momentum) == \
            (10, 1000, "sgd", lr, 0.0)
    assert p.common.precision in params.PRECISIONS
    assert p.download.source_dir is None


def test_parse_accepts_other_valid_values():
    p = params.parse(params_with(**{
        "datasets": ["fashion_mnist"],
        "lecture.pretrain_layer1.layers": [784, 300], "lecture.stack_layer2.layers": [300, 64],
        "lecture.finetune_classifier.layers": [64, 10],
        "lecture.stack_layer2.optimizer": "adam", "lecture.finetune_classifier.momentum": 0.9,
        "lecture.pretrain_layer1.lr": 1, "common.precision": "float64", "common.device": "cpu",
        "download.source_dir": "/some/folder"}))
    assert p.datasets == ("fashion_mnist",)
    lecture = p.recipe("lecture")
    assert (lecture.pretrain_layer1.layers, lecture.stack_layer2.layers,
            lecture.finetune_classifier.layers) == \
        ((784, 300), (300, 64), (64, 10))
    assert lecture.stack_layer2.optimizer == "adam" and lecture.finetune_classifier.momentum == 0.9
    assert p.common.precision == "float64" and p.download.source_dir == "/some/folder"


def test_the_largest_seed_allowed_is_one_torch_takes():
    seed = params.parse(params_with(**{"common.seed": params.MAX_SEED})).common.seed
    torch.manual_seed(seed)
    torch.Generator().manual_seed(seed)  # the training loop's batch order


# ---------------------------------------------------------------- bad values

# (overrides, dotted key in the message, the bad value as it must appear, what is allowed)
BAD_VALUES = [
    ({"common.seed": 2**64}, "common.seed", "18446744073709551616",
     "an integer >= 0 and <= 18446744073709551615"),
    ({"common.seed": -1}, "common.seed", "-1", "an integer >= 0"),
    ({"lecture.pretrain_layer1.epochs": "10"}, "lecture.pretrain_layer1.epochs", "'10'", "integer >= 1"),
    ({"lecture.stack_layer2.batch_size": True}, "lecture.stack_layer2.batch_size", "True", "integer >= 1"),
    ({"lecture.finetune_classifier.epochs": 10.0}, "lecture.finetune_classifier.epochs", "10.0",
     "integer >= 1"),
    ({"lecture.finetune_classifier.lr": 0}, "lecture.finetune_classifier.lr", "= 0 ", "a number > 0 and <= 1e+06"),
    ({"lecture.finetune_classifier.lr": -1}, "lecture.finetune_classifier.lr", "-1", "a number > 0 and <= 1e+06"),
    ({"lecture.pretrain_layer1.lr": float("inf")}, "lecture.pretrain_layer1.lr", "inf", "a number > 0 and <= 1e+06"),
    ({"lecture.pretrain_layer1.lr": float("nan")}, "lecture.pretrain_layer1.lr", "nan", "a number > 0 and <= 1e+06"),
    ({"lecture.stack_layer2.epochs": 0}, "lecture.stack_layer2.epochs", "= 0 ", "integer >= 1"),
    ({"lecture.pretrain_layer1.batch_size": 0}, "lecture.pretrain_layer1.batch_size", "= 0 ", "integer >= 1"),
    ({"evaluate.batch_size": -5}, "evaluate.batch_size", "-5", "integer >= 1"),
    ({"lecture.pretrain_layer1.encoder_activation": "softmax"}, "lecture.pretrain_layer1.encoder_activation",
     "'softmax'", "tanh, sigmoid, relu, identity"),
    ({"lecture.stack_layer2.optimizer": "rmsprop"}, "lecture.stack_layer2.optimizer", "'rmsprop'",
     "sgd, adam"),
    ({"common.precision": "float16"}, "common.precision", "'float16'", "float32, float64"),
    ({"common.device": "tpu"}, "common.device", "'tpu'", "auto, cpu, cuda"),
    ({"lecture.finetune_classifier.momentum": 1}, "lecture.finetune_classifier.momentum", "= 1 ", "[0, 1)"),
    ({"lecture.finetune_classifier.momentum": 1.5}, "lecture.finetune_classifier.momentum", "1.5", "[0, 1)"),
    ({"lecture.pretrain_layer1.momentum": -0.1}, "lecture.pretrain_layer1.momentum", "-0.1", "[0, 1)"),
    ({"datasets": ["mnist", "cifar10"]}, "datasets", "'cifar10'", "mnist, fashion_mnist"),
    ({"datasets": ["mnist", "mnist"]}, "datasets", "['mnist', 'mnist']", "without repeats"),
    ({"datasets": []}, "datasets", "[]", "non-empty"),
    # a YAML slip such as "- [mnist, fashion_mnist]" must be a ParamsError, not a TypeError
    ({"datasets": [["mnist", "fashion_mnist"]]}, "datasets", "[['mnist', 'fashion_mnist']]",
     "mnist, fashion_mnist"),
    ({"lecture.pretrain_layer1.layers": [784]}, "lecture.pretrain_layer1.layers", "[784]", "two integers"),
    ({"lecture.pretrain_layer1.layers": [784, 100000000]}, "lecture.pretrain_layer1.layers",
     "[784, 100000000]", "two integers >= 1 and <= 65536"),
    # layer sizes that do not chain 784 -> 400 -> 256 -> 10
    ({"lecture.pretrain_layer1.layers": [784, 300]}, "lecture.stack_layer2.layers[0]", "400",
     "300 (lecture.pretrain_layer1.layers[1])"),
    ({"lecture.pretrain_layer1.layers": [700, 400]}, "lecture.pretrain_layer1.layers[0]", "700",
     "784 (the image size)"),
    ({"lecture.stack_layer2.layers": [400, 128]}, "lecture.finetune_classifier.layers[0]", "256",
     "128 (lecture.stack_layer2.layers[1])"),
    ({"lecture.finetune_classifier.layers": [256, 9]}, "lecture.finetune_classifier.layers[1]", "= 9 ",
     "10 (the number of classes)"),
]


@pytest.mark.parametrize("overrides, key, shown, allowed", BAD_VALUES,
                         ids=[f"{k}={v!r}" for o, *_ in BAD_VALUES for k, v in o.items()])
def test_bad_value_names_key_value_and_what_is_allowed(overrides, key, shown, allowed):
    message = error_of(params_with(**overrides))
    assert f"{key} = " in message
    assert shown in message
    assert allowed in message


def test_unknown_top_level_key_is_named_with_the_allowed_keys():
    message = error_of(params_with(**{"pretrain": {"lr": 0.1}}))
    assert "unknown key pretrain;" in message
    for key in ("datasets", "recipes", "common", "evaluate", "lecture", "tuned"):
        assert key in message


def test_unknown_key_inside_a_section_is_named_dotted_with_the_allowed_keys():
    message = error_of(params_with(**{"lecture.finetune_classifier.learning_rate": 0.1}))
    assert "lecture.finetune_classifier.learning_rate" in message
    assert "lr" in message.split("learning_rate", 1)[1]
    assert "momentum" in message


@pytest.mark.parametrize("section, key", [("lecture.finetune_classifier", "lr"),
                                          ("common", "seed"),
                                          ("tuned.pretrain_layer1", "decoder_activation")])
def test_missing_key_is_named_dotted(section, key):
    raw = copy.deepcopy(DEFAULT_PARAMS)
    inner = raw
    for name in section.split("."):
        inner = inner[name]
    del inner[key]
    message = error_of(raw)
    assert "missing" in message and f"{section}.{key}" in message


def test_missing_section_is_named():
    raw = copy.deepcopy(DEFAULT_PARAMS)
    del raw["tuned"]["stack_layer2"]
    assert "tuned.stack_layer2" in error_of(raw)


def test_recipe_named_in_recipes_needs_its_section():
    message = error_of(params_with(**{"recipes": ["lecture", "tuned", "mine"]}))
    assert "missing key mine" in message


def test_unknown_recipe_is_refused_by_name():
    with pytest.raises(ParamsError, match=r"'nope'"):
        params.parse(copy.deepcopy(DEFAULT_PARAMS)).recipe("nope")


@pytest.mark.parametrize("recipes", [[], "lecture", ["lecture", "lecture"],
                                     ["lecture", "x; touch pwned"], ["common"]])
def test_bad_recipes_list_is_refused(recipes):
    assert "recipes = " in error_of(params_with(recipes=recipes))


def test_section_that_is_not_a_mapping_is_refused():
    message = error_of(params_with(**{"common": [0, "float32"]}))
    assert "common = [0, 'float32']" in message and "mapping" in message


# ---------------------------------------------------------------- the file


def test_load_reads_a_file_and_rejects_infinite_lr_written_as_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(**{"lecture.finetune_classifier.lr": 0.5})))
    assert params.load(path).recipe("lecture").finetune_classifier.lr == 0.5
    path.write_text(path.read_text().replace("lr: 0.5", "lr: .inf"))
    with pytest.raises(ParamsError, match=r"finetune_classifier\.lr = inf"):
        params.load(path)


@pytest.mark.parametrize("text, expected", [
    ("datasets: [mnist\ncommon: {", "cannot read"),            # not YAML
    ("- mnist\n- fashion_mnist\n", "the file = ['mnist'"),      # YAML, not a mapping
    ("just a sentence\n", "the file = 'just a sentence'"),      # a scalar
    ("", "missing key datasets"),                                # empty: {} to DVC too
], ids=["not-yaml", "a-list", "a-scalar", "empty"])
def test_file_that_is_not_a_yaml_mapping_raises_params_error(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as caught:
        params.load(path)
    assert expected in str(caught.value)


def test_binary_file_raises_params_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(bytes(range(256)))  # e.g. a model file copied over params.yaml
    with pytest.raises(ParamsError, match="cannot read"):
        params.load(path)


def test_missing_file_raises_params_error_naming_it(tmp_path):
    with pytest.raises(ParamsError, match="cannot read .*nowhere.yaml"):
        params.load(tmp_path / "nowhere.yaml")


# ---------------------------------------------------------------- one reading: DVC's


def dvc_reading(folder):
    """params.yaml as DVC itself reads it (what it records in dvc.lock and compares), in a
    git + DVC repository whose one stage declares every section."""
    from dvc.repo import Repo
    if not (folder / ".dvc").exists():
        subprocess.run(["git", "init", "-q"], cwd=folder, check=True, timeout=60)
        Repo.init(folder)
    sections = ", ".join(DEFAULT_PARAMS)
    (folder / "dvc.yaml").write_text(f"stages:\n  s:\n    cmd: 'true'\n    params: [{sections}]\n")
    with Repo(folder) as repo:
        return repo.params.show()[""]["data"]["params.yaml"]["data"]


def params_file(folder, old, new):
    """The default params.yaml, as text, with one line changed (not re-dumped: the point is
    how YAML reads what a user writes)."""
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    (folder / "params.yaml").write_text(text.replace(old, new, 1))
    return folder / "params.yaml"


def test_a_leading_zero_means_to_the_stages_what_dvc_records(tmp_path):
    """YAML 1.1 read `010` as octal 8, DVC (YAML 1.2) as 10: the run cache then served a
    seed-8 model for seed 10."""
    path = params_file(tmp_path, "seed: 0", "seed: 010")
    assert params.load(path).common.seed == dvc_reading(tmp_path)["common"]["seed"] == 10


def test_a_sexagesimal_looking_value_is_text_to_both_and_refused_in_one_line(tmp_path):
    path = params_file(tmp_path, "seed: 0", "seed: 1:30")
    assert dvc_reading(tmp_path)["common"]["seed"] == "1:30"  # YAML 1.1 made it 90
    with pytest.raises(ParamsError) as caught:
        params.load(path)
    assert str(caught.value).startswith("params.yaml: common.seed = '1:30' is not allowed; "
                                        "expected an integer >= 0")


@pytest.mark.parametrize("assignment, key, value", [
    ("tuned.finetune_classifier.lr=0.00005", "lr", 5e-05),
    ("tuned.finetune_classifier.lr=5e-5", "lr", 5e-05),
    ("tuned.finetune_classifier.weight_decay=1e-5", "weight_decay", 1e-05),
])
def test_a_small_number_set_with_dash_s_is_a_number_to_the_stages(tmp_path, assignment, key,
                                                                   value):
    """`dvc exp run -S` writes 0.00005 as 5e-05, which YAML 1.1 reads as text."""
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls
    path = params_file(tmp_path, "datasets:", "datasets:")
    apply_overrides(path, [assignment])
    assert "e-05" in path.read_text()
    loaded = getattr(params.load(path).recipe("tuned").finetune_classifier, key)
    assert loaded == dvc_reading(tmp_path)["tuned"]["finetune_classifier"][key] == value


def test_every_default_value_reads_as_dvc_reads_it(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    assert params.load(tmp_path / "params.yaml") == params.parse(dvc_reading(tmp_path))


# ---------------------------------------------------------------- a stage stops first


def test_stage_with_bad_lr_exits_1_with_one_line_and_writes_nothing(in_project, real_data):
    data = real_data / "mnist"
    project = in_project(**{"lecture.pretrain_layer1.lr": -1, "common.device": "cpu"})
    result = run_stage("pretrain_layer1", "--recipe", "lecture", "--dataset", "mnist",
                     "--data", data, "--model", "m/layer1.pt", "--live", "h/l1",
                     cwd=project)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "lecture.pretrain_layer1.lr = -1 " in line
    assert not (project / "m").exists() and not (project / "h").exists()


def test_a_quoted_number_is_named_as_text_with_a_hint_that_works(tmp_path):
    path = params_file(tmp_path, "lr: 0.1", 'lr: "1e-3"')
    with pytest.raises(ParamsError) as caught:
        params.load(path)
    assert str(caught.value).endswith("lecture.finetune_classifier.lr = '1e-3' is not allowed; "
                                      "expected a number > 0 and <= 1e+06 (YAML reads it as "
                                      "text: write a number without quotes, e.g. 0.001 or 1e-3)")
