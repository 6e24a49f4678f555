"""The pages of liveroom and the files they load, installed as package data: ``pages/`` (HTML),
``static/`` (scripts, styles) and the npm assets the pages use (``node_modules/``, from
``package-lock.json``; a wheel carries those listed in pyproject.toml's package-data).

No Python lives here: ``liveroom/http/pages.py`` serves these files from wherever the package is
installed (the source tree in an editable install)."""

__all__: list[str] = []
