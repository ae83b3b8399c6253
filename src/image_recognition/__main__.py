"""image_recognition file for ensuring the package is executable
as `image-recognition` and `python -m image_recognition`
"""

import contextlib
import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    package_name = Path(__file__).parent.name
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    # `image-recognition predict ...` predicts image files, `image-recognition params NAME` shows
    # resolved parameters; anything else runs the pipeline, as Kedro's packaged projects do.
    argv = list(args[0] if args else kwargs.get("args") or sys.argv[1:])
    if argv[:1] in (["predict"], ["params"]):
        # Kedro logs while it is imported: to stderr, so that stdout holds only the command's answer.
        with contextlib.redirect_stdout(sys.stderr):
            from kedro.framework.project import configure_project  # noqa: PLC0415

            from image_recognition import cli  # noqa: PLC0415 (only these commands need it)

            configure_project(package_name)
        command = getattr(cli, argv[0])
        return command.main(
            argv[1:], prog_name=f"image-recognition {argv[0]}", standalone_mode=kwargs["standalone_mode"]
        )

    from kedro.framework.cli.utils import find_run_command  # noqa: PLC0415 (imported after the branch above)
    from kedro.framework.project import configure_project  # noqa: PLC0415

    configure_project(package_name)
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
