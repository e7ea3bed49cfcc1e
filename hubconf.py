"""torch.hub entry points: `torch.hub.load(REPO_DIR, "mobilevitv3_xxs", source="local", weights=FILE, ...)` for
every architecture of `mobilevitv3.list_models()` (keywords as `mobilevitv3.create_model`), and
`torch.hub.load(REPO_DIR, "from_pretrained", FOLDER, source="local")` for a `save_pretrained` folder."""
import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "safetensors", "yaml"]

_SRC = Path(__file__).resolve().parent / "src"
if str(_SRC) not in sys.path:   # this checkout's package, also where it is not pip-installed
    sys.path.insert(0, str(_SRC))

from mobilevitv3 import create_model, list_models  # noqa: E402
from mobilevitv3.hub import from_pretrained  # noqa: E402,F401


def _entry(name):
    def load(**kwargs):
        return create_model(name, **kwargs)
    load.__name__ = name
    load.__doc__ = f"mobilevitv3.create_model({name!r}, **kwargs): weights=FILE, num_classes=..., etc."
    return load


for _name in list_models():
    globals()[_name] = _entry(_name)
