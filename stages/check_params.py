"""Stage 0: validate the whole params.yaml before anything else runs.

Every other stage depends on this stage's output, so DVC runs it first whenever params.yaml
changes at all, even where no stage declares the key that changed: an unknown key (a typo
such as `finetune_clasifier`), an empty or malformed `datasets` list, or a value out of
range stops `dvc repro` here with one line, before any stage command (whose text DVC builds
from `datasets` and `recipes`) reaches the shell. Its output is a constant text, so a valid
change re-runs no other stage through it.
"""
from sae import params, stage
from sae.atomic import write_text


def main(argv=None):
    args = stage.parse_args(__doc__.splitlines()[0], argv, "out", recipe=False, dataset=False)
    params.load()
    write_text(args.out, f"{params.PARAMS_FILE} is valid\n")


if __name__ == "__main__":
    stage.run(main)
