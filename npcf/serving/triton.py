"""A Triton Inference Server model repository for an exported graph.

:func:`write_repository` writes ``DIR/<name>/1/model.onnx`` and ``DIR/<name>/config.pbtxt``
(platform ``onnxruntime_onnx``). The config is generated from the graph's own inputs
and outputs: names, data types (``TYPE_FP32``, ``TYPE_INT64``, ...) and dims without
the leading batch dim, ``-1`` where a dim is symbolic (``max_len``); a tensor that is
only ``[batch]`` (``n_unknown``) is declared ``dims: [ 1 ]`` with ``reshape: { shape: [ ] }``,
Triton's form for it. Batching is dynamic, on CPU instances.

Only ``DIR/<name>`` is replaced (built beside it and swapped in), so a repository may
hold other models. Imports onnx only (no tritonclient: the tests parse the text with
Triton's ``ModelConfig`` schema).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx

from npcf.errors import NpcfError, ParamError, one_line
from npcf.utils.files import staged_dir

PLATFORM = "onnxruntime_onnx"
DEFAULT_MAX_BATCH = 256
DEFAULT_QUEUE_DELAY_US = 100
#: the version directory a repository serves (Triton's default policy: the latest)
VERSION = "1"
#: ONNX element type -> Triton data type
DATA_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64",
              onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
              onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.BOOL: "TYPE_BOOL",
              onnx.TensorProto.STRING: "TYPE_STRING"}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def default_name(model_path) -> str:
    """The model name for an ``.onnx`` file: its stem, characters other than letters,
    digits, ``_`` and ``-`` as ``_`` (``model.fp16.onnx`` -> ``model_fp16``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", Path(model_path).stem) or "model"


def check_name(name: str) -> str:
    """``name`` if it is a usable Triton model name (a directory name: letters, digits,
    ``_``, ``.``, ``-``, not starting with ``.`` or ``-``, at most 128), else ParamError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParamError("triton_name", f"{name!r}: a Triton model name is 1-128 letters, "
                         "digits, '_', '.' or '-', starting with a letter, digit or '_'")
    return name


def check_target(directory, name: str) -> Path:
    """``DIR/<name>`` after checking it may be (re)written: DIR is not a file, and an
    existing ``DIR/<name>`` is a model directory (has ``config.pbtxt``)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NpcfError(f"--triton {directory}: is a file, not a model repository directory")
    target = directory / check_name(name)
    if target.exists() and not (target.is_dir() and (target / "config.pbtxt").is_file()):
        raise NpcfError(f"--triton {directory}: {target} exists and is not a Triton model "
                        "directory (no config.pbtxt); choose another --triton_name or remove it")
    if target.is_dir():            # only what an earlier export wrote may be replaced
        ours = {"config.pbtxt", VERSION}
        extra = sorted(p.name for p in target.iterdir() if p.name not in ours)
        version = target / VERSION
        if version.is_dir():
            extra += sorted(f"{VERSION}/{p.name}" for p in version.iterdir()
                            if p.name != "model.onnx")
        if extra:
            raise NpcfError(f"--triton {directory}: {target} holds files npcf did not write "
                            f"({', '.join(extra[:5])}); move them away or choose another "
                            "--triton_name")
    return target


def _dims(value_info, where: str) -> tuple[list[int], bool]:
    """Dims of a graph input/output without the batch dim, and whether it was only
    ``[batch]`` (declared ``[1]`` + empty reshape)."""
    t = value_info.type.tensor_type
    shape = list(t.shape.dim)
    if not shape or shape[0].HasField("dim_value"):
        raise NpcfError(f"{where}: {value_info.name!r} has no symbolic batch dim first; "
                        "Triton's batching needs one")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape[1:]]
    return (dims, False) if dims else ([1], True)


def _tensor_text(value_info, where: str) -> str:
    elem = value_info.type.tensor_type.elem_type
    if elem not in DATA_TYPES:
        raise NpcfError(f"{where}: {value_info.name!r} has ONNX type "
                        f"{onnx.TensorProto.DataType.Name(elem)}, which has no Triton type here")
    dims, reshape = _dims(value_info, where)
    lines = [f'    name: "{value_info.name}"', f"    data_type: {DATA_TYPES[elem]}",
             f"    dims: [ {', '.join(map(str, dims))} ]"]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_text(m: onnx.ModelProto, name: str, *, max_batch_size: int = DEFAULT_MAX_BATCH,
                max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, where: str = "model") -> str:
    """``config.pbtxt`` (protobuf text of Triton's ``ModelConfig``) serving graph ``m``."""
    if int(max_batch_size) < 1:
        raise NpcfError(f"--triton_max_batch {max_batch_size}: must be >= 1")
    ins = ",\n".join(_tensor_text(v, where) for v in m.graph.input)
    outs = ",\n".join(_tensor_text(v, where) for v in m.graph.output)
    return (f'name: "{check_name(name)}"\n'
            f'platform: "{PLATFORM}"\n'
            f"max_batch_size: {int(max_batch_size)}\n"
            f"input [\n{ins}\n]\n"
            f"output [\n{outs}\n]\n"
            "dynamic_batching {\n"
            f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n"
            "}\n"
            "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n")


def write_repository(model_path, directory, *, name: str | None = None,
                     max_batch_size: int = DEFAULT_MAX_BATCH,
                     max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> dict:
    """Write ``directory/<name>/1/model.onnx`` (a copy of ``model_path``) and
    ``directory/<name>/config.pbtxt``; ``name`` defaults to :func:`default_name`.
    Atomic per model: ``directory/<name>`` is built beside itself and swapped in.
    Returns ``{"directory", "name", "model", "config"}`` (paths as strings)."""
    model_path = Path(model_path)
    name = check_name(name if name is not None else default_name(model_path))
    target = check_target(directory, name)
    try:
        m = onnx.load(str(model_path), load_external_data=False)
    except Exception as err:  # onnx raises protobuf's DecodeError and others
        raise NpcfError(f"{model_path}: cannot read the ONNX model ({one_line(err)[:200]})") \
            from None
    text = config_text(m, name, max_batch_size=max_batch_size,
                       max_queue_delay_us=max_queue_delay_us, where=str(model_path))
    try:
        with staged_dir(target) as stage:
            (stage / VERSION).mkdir()
            shutil.copyfile(model_path, stage / VERSION / "model.onnx")
            (stage / "config.pbtxt").write_text(text, encoding="utf-8")
    except OSError as err:
        raise NpcfError(f"--triton {directory}: cannot write there ({err.strerror or err})") \
            from None
    return {"directory": str(Path(directory)), "name": name,
            "model": str(target / VERSION / "model.onnx"), "config": str(target / "config.pbtxt")}
