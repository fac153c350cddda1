"""Reading JSON that a user or an earlier run wrote, with errors that name the file and line.

`parse_json` is `json.loads` whose failures (text that is not JSON, nesting deeper than the
decoder recurses) are `GreyglassError`s naming where the text came from; `read_json_object`
reads a whole file (config.json, results.json, manifest.json, cfg.json, direction.json) that
must hold one JSON object, so a reader never meets a list or bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import GreyglassError


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(text: str | bytes, where: str) -> Any:
    """The JSON value in `text`; `where` (a file, a file and line) names it in errors."""
    try:
        value = json.loads(text)
        if _SURROGATE_ESCAPE.search(text if isinstance(text, str) else text.decode(errors="replace")):
            json.dumps(value, ensure_ascii=False).encode()  # an unpaired one decodes to a str no encoder accepts
        return value
    except UnicodeEncodeError:
        raise GreyglassError(f"{where}: not valid JSON (a \\u escape is half of a UTF-16 surrogate pair, "
                             "not a character)") from None
    except json.JSONDecodeError as e:
        raise GreyglassError(f"{where}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise GreyglassError(f"{where}: not valid JSON (nested too deeply to read)") from None
    except UnicodeDecodeError as e:
        raise GreyglassError(f"{where}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except ValueError as e:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise GreyglassError(f"{where}: not valid JSON ({e})") from None


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in the file `path`; a missing, unreadable or non-object file is a GreyglassError."""
    path = Path(path)
    try:
        data = parse_json(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise GreyglassError(f"{path} does not exist") from None
    except OSError as e:
        raise GreyglassError(f"{path} cannot be read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise GreyglassError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
