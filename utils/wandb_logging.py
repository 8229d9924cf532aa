"""Optional Weights & Biases logging; a no-op unless ``wandb_enabled`` (offline mode needs no network).

The API key (``wandb_api_key`` in the config, or ``WANDB_API_KEY`` in the environment) is handed to
W&B through the environment of this process and only for online runs, which need it; the run config
W&B stores shows it redacted (:mod:`utils.secrets`).
"""
import os

from utils.secrets import redact, secret_value


class RunLogger:
    def __init__(self, config, out_dir, enabled=True):
        self.run = None
        if not (config.wandb_enabled and enabled):
            return
        import wandb

        key = secret_value(config.wandb_api_key)
        if key and not config.wandb_offline:
            os.environ.setdefault("WANDB_API_KEY", key)
        self.run = wandb.init(project=config.wandb_project_name or "shortcutlab", name=config.config_name,
                              config=redact(config.model_dump(mode="json")), dir=str(out_dir),
                              mode="offline" if config.wandb_offline else "online", reinit=True)

    def log(self, metrics, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self):
        if self.run is not None:
            self.run.finish()
