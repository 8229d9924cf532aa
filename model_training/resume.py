"""Whether a stopped run may be continued by the config at hand: the run and the config must compute
the same thing.

A checkpoint of the Trainer records the resolved config (:func:`run_settings` of it is compared) and
the identities of the inputs the run depends on (``inputs``: the data's content, the weights it
started from, for a correction the original checkpoint and the localization masks). Resuming is
allowed when both are equal, except that ``num_epochs`` may grow (a run of 2 epochs continued to 3
equals a run of 3). Anything else — another learning rate, optimizer, data file or original model —
is a different run: :func:`resume_mismatch` names every differing key. A setting a checkpoint of an
older version does not record counts as its default (what that version computed); an input it did not
record is accepted only where there is nothing to compare (generated data).
"""
from utils.secrets import without_secrets

# keys that do not change what a run computes: where it writes, how it is run and logged; the paths
# of its inputs are compared through their identities (``inputs``), not their spelling
NOT_COMPARED = frozenset({"config_name", "output_dir", "device", "num_workers", "wandb_enabled", "wandb_offline",
                          "wandb_project_name", "data_paths", "ckpt_path", "localization_dir", "pretrained_weights",
                          "num_epochs"})


def run_settings(config: dict) -> dict:
    """The part of a resolved config (a dict) that decides what a run computes."""
    return {k: v for k, v in without_secrets(config).items() if k not in NOT_COMPARED}


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def resume_mismatch(checkpoint: dict, config, inputs: dict) -> list:
    """Why the run saved in ``checkpoint`` cannot be continued by ``config`` (a list of one-phrase reasons,
    empty when it can). ``inputs``: the identities of this config's inputs; an input the checkpoint does
    not record (written by an older version) is not compared."""
    saved, wanted = run_settings(checkpoint.get("config") or {}), run_settings(config.model_dump(mode="json"))
    # a setting added after the run was saved: the older version computed what its default computes
    defaults = type(config).model_fields
    saved = {**{k: defaults[k].get_default(call_default_factory=True) for k in wanted if k not in saved and k in defaults}, **saved}
    reasons = [f"{key} ({_show(saved.get(key))} -> {_show(wanted.get(key))})"
               for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]
    recorded = checkpoint.get("inputs") or {}
    for name, identity in sorted(inputs.items()):
        if name not in recorded and identity is not None:
            reasons.append(f"{name} (not recorded by the stopped run, so it cannot be shown to be the same)")
        elif name in recorded and recorded[name] != identity:
            reasons.append(f"{name} (another file or content)")
    epochs = int(checkpoint.get("epoch") or 0)
    if epochs > config.num_epochs:
        reasons.append(f"num_epochs (the stopped run has trained {epochs} epochs, more than {config.num_epochs})")
    return reasons
