"""Optional Weights & Biases logging; a no-op unless ``wandb_enabled`` (offline mode needs no network)."""
import os


class RunLogger:
    def __init__(self, config, out_dir, enabled=True):
        self.run = None
        if not (config.wandb_enabled and enabled):
            return
        import wandb

        if config.wandb_api_key:
            os.environ.setdefault("WANDB_API_KEY", config.wandb_api_key)
        self.run = wandb.init(project=config.wandb_project_name or "shortcutlab", name=config.config_name,
                              config=config.model_dump(mode="json"), dir=str(out_dir),
                              mode="offline" if config.wandb_offline else "online", reinit=True)

    def log(self, metrics, step=None):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def finish(self):
        if self.run is not None:
            self.run.finish()
