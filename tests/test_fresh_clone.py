"""The README's commands from a fresh clone, as a newcomer runs them: the first leaves
`git status` clean, and the experiment command re-runs only the stages it says it does
(not the tuned recipe, whose outputs are in no cache of a fresh clone)."""
import shlex
import sys

from tests.conftest import ROOT, recipe_stages, run, stages_run


def readme_command(prefix):
    """The README's command line that starts with `prefix`, without its comment, as argv."""
    lines = (ROOT / "README.md").read_text().splitlines()
    line = next(line for line in lines if line.startswith(prefix))
    return shlex.split(line, comments=True)


def makefile_command(target, prefix):
    """The line of a Makefile target's recipe that starts with `prefix`, as argv."""
    recipe = (ROOT / "Makefile").read_text().split(f"\n{target}:", 1)[1]
    line = next(line.strip() for line in recipe.splitlines() if line.startswith(f"\t{prefix}"))
    return shlex.split(line, comments=True)


def test_readme_experiment_in_a_fresh_clone_reruns_only_the_stages_it_names(reproduced,
                                                                             tmp_path):
    # A clone of a project whose committed dvc.lock holds every recipe, with no DVC cache.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(reproduced[0]), str(clone)], tmp_path)
    pipeline = makefile_command("pipeline", "dvc repro")
    run([sys.executable, "-m", *pipeline], clone)
    assert run(["git", "status", "--porcelain"], clone) == ""

    experiment = readme_command("dvc exp run")
    assert "lecture.finetune_classifier.lr=0.2" in experiment
    output = run([sys.executable, "-m", *experiment], clone)
    assert stages_run(output) == {"check_params"} | recipe_stages(
        ("finetune_classifier", "evaluate"), recipes=["lecture"]), output
