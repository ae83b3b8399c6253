"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

import os
import warnings
from pathlib import Path

import rich
from kedro.framework.project import LOGGING, configure_logging
from kedro.utils import find_config_file, find_kedro_project

from image_recognition.integrations.config_loader import HardwareAwareConfigLoader
from image_recognition.integrations.hooks import (
    DataStoreHook,
    DiscardFailedRunHook,
    InputVersionsHook,
    SelectedCheckpointHook,
    ValidateParametersHook,
)
from image_recognition.integrations.session_store import UniqueVersionStore
from image_recognition.integrations.tracking import MlflowTrackingHook, RedactUrlsHook, tracking_enabled

# Experiment tracking (the optional `mlflow` extra): kedro-mlflow registers its own
# hook when installed; IMAGE_RECOGNITION_TRACKING=off unregisters it and leaves
# the project's out (tracking.py); RedactUrlsHook keeps credentials of URLs out of
# what kedro-mlflow logs. Kedro names plugins by distribution name.
TRACKING = tracking_enabled()
HOOKS = (
    DataStoreHook(),
    SelectedCheckpointHook(),
    ValidateParametersHook(),
    InputVersionsHook(),
    DiscardFailedRunHook(),
    *([RedactUrlsHook(), MlflowTrackingHook()] if TRACKING else []),
)
# kedro-viz's hooks record each run for `kedro viz` in the project folder; a packaged
# run (`python -m image_recognition --conf-source=...`) has none, and they would warn
# "No Kedro project found" at each run.
DISABLE_HOOKS_FOR_PLUGINS = (
    *([] if TRACKING else ["kedro_mlflow"]),
    *([] if find_kedro_project(Path.cwd()) else ["kedro-viz"]),
)

# A session's id is the save version of all it saves; the store reserves it, so two
# sessions that start in one millisecond still save distinct versions (session_store.py).
SESSION_STORE_CLASS = UniqueVersionStore

# Without --env or KEDRO_ENV, the recipes follow the hardware: conf/cpu is
# layered between base and local where there is no CUDA (config_loader.py).
# Parameters merge key by key ("soft"), so an environment lists only what it
# changes from conf/base; the benchmarks merge the same way (training/recipes.py).
CONFIG_LOADER_CLASS = HardwareAwareConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}


def hide_register_new_resolver_warnings() -> None:
    """Hide omegaconf's deprecation of register_new_resolver(), where Kedro, kedro-mlflow and tracking.py call it.

    omegaconf 2.4 deprecates it and warns at each call: twice a run from Kedro's
    own OmegaConfigLoader, once each from kedro-mlflow's hook and the project's
    tracking hook, none about a setting a user can change. Its replacement,
    register_resolver(), means something else in the omegaconf versions before
    2.4 that Kedro also accepts. Only these warnings, from these callers, are
    hidden (upstream: https://github.com/hydra-ecosystem/omegaconf/issues/426).
    """
    warnings.filterwarnings(
        "ignore",
        message=r"register_new_resolver\(\) is deprecated",
        category=UserWarning,
        module=(
            r"(kedro\.config\.omegaconf_config"
            r"|kedro_mlflow\.framework\.hooks\.mlflow_hook"
            r"|image_recognition\.integrations\.tracking)\Z"
        ),
    )


def rich_logging_on_a_terminal() -> None:
    """Make Kedro's rich handler the root handler where rich finds a terminal or a notebook.

    Only over the project's own conf/logging.yml, whose plain lines suit everywhere
    else. The rich handler is added here rather than declared in that file: Kedro
    builds every handler a file declares, and building this one sends warnings
    and tracebacks through rich, folded at 80 columns off a terminal.
    """
    if os.environ.get("KEDRO_LOGGING_CONFIG") or find_config_file("conf/logging") is None:
        return
    console = rich.get_console()
    if console.is_terminal or console.is_jupyter:
        config = LOGGING.data
        configure_logging(
            {
                **config,
                "handlers": {
                    **config["handlers"],
                    "rich": {"class": "kedro.logging.RichHandler", "rich_tracebacks": True},
                },
                "root": {**config["root"], "handlers": ["rich"]},
            }
        )


hide_register_new_resolver_warnings()
rich_logging_on_a_terminal()
