"""The library the stage scripts share: params, data, model, training, evaluation, plots."""
