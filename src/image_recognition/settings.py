"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from image_recognition.hooks import DiscardFailedRunHook, InputVersionsHook, ValidateParametersHook

HOOKS = (ValidateParametersHook(), InputVersionsHook(), DiscardFailedRunHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
