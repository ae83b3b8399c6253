"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

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
DISABLE_HOOKS_FOR_PLUGINS = () if TRACKING else ("kedro_mlflow",)

# A session's id is the save version of all it saves; the store reserves it, so two
# sessions that start in one millisecond still save distinct versions (session_store.py).
SESSION_STORE_CLASS = UniqueVersionStore

# Without --env or KEDRO_ENV, the recipes follow the hardware: conf/cpu is
# layered between base and local where there is no CUDA (config_loader.py).
CONFIG_LOADER_CLASS = HardwareAwareConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
