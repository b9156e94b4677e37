"""Model files as bytes, for tests (moved out of gradbox.io: the library keeps no test-only hooks)."""
from gradbox import io as gio


def serialize(arrays, metadata=None, model=None) -> bytes:
    """The whole file ``gradbox.save``/``save_model`` would write, as bytes (``model``: the header's model entry)."""
    return b"".join(bytes(p) for p in gio._serialize_parts(arrays, metadata, model))


def load_model_bytes(buf) -> gio.ModelFile:
    """``gradbox.load_model`` on bytes instead of a path."""
    arrays, _, header = gio._parse(buf)
    return gio._model_from_header(arrays, header)
