"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from image_recognition.config_loader import HardwareAwareConfigLoader
from image_recognition.hooks import (
    DiscardFailedRunHook,
    InputVersionsHook,
    SelectedCheckpointHook,
    ValidateParametersHook,
)

HOOKS = (SelectedCheckpointHook(), ValidateParametersHook(), InputVersionsHook(), DiscardFailedRunHook())

# Without --env or KEDRO_ENV, the recipes follow the hardware: conf/cpu is
# layered between base and local where there is no CUDA (config_loader.py).
CONFIG_LOADER_CLASS = HardwareAwareConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
