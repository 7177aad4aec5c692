"""KServe V2's HTTP/REST bodies ⇄ the V2 protobuf messages, as Triton writes and reads them.

An infer request becomes the `ModelInferRequest` the shared engine takes, so HTTP runs the very checks
gRPC runs. Its inputs come as JSON `data` (typed contents; nested or flat, row-major) or, per Triton's
binary-data extension, as bytes after a JSON header of `Inference-Header-Content-Length` bytes (raw
contents: numbers little-endian, each BYTES element after a 4-byte little-endian length). Outputs go
back as flat JSON `data`, or as binary data where the request asks (`binary_data` on a named output,
`binary_data_output` for outputs not named), each with its `binary_data_size`.

Every refusal is a `RequestError` naming the field and what was wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from serving.bundle.quoting import shown
from serving.server.error_status import RequestError
from serving.server.tensors import DTYPES, unpack_bytes
from serving.wire import inference_pb2 as pb

__all__ = [
    "HEADER_LENGTH",
    "OutputFormat",
    "encode_infer",
    "index_json",
    "json_object",
    "message_json",
    "parse_infer",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
# V2 datatype → the typed-contents field its JSON `data` goes into
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_BINARY_ONLY = ("FP16", "BF16")  # JSON numbers cannot carry them (Triton refuses them in JSON too)
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


@dataclass(frozen=True)
class OutputFormat:
    """How each output goes back: `named` outputs as their `binary_data` says, the rest as `rest`."""

    named: dict[str, bool]
    rest: bool

    def binary(self, name: str) -> bool:
        return self.named.get(name, self.rest)


def parse_infer(
    body: bytes, header_length: str | None, model: str, version: str
) -> tuple[pb.ModelInferRequest, OutputFormat]:
    """An HTTP infer body (and its `Inference-Header-Content-Length` header, if sent) as the request
    the engine takes, and how its outputs are to be encoded."""
    header, binary = _split(body, header_length)
    fields = json_object(header, "the inference header" if header_length is not None else "the request body")
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.id = _text(fields.get("id", ""), "'id'")
    parameters = _object(fields.get("parameters", {}), "'parameters'")
    _set_parameters(request.parameters, parameters, "request parameter")
    rest = _flag(parameters.get("binary_data_output", False), "parameter 'binary_data_output'")

    reader = _BinaryData(binary, header_length is not None)
    for index, tensor in enumerate(_list(fields.get("inputs"), "'inputs'")):
        _add_input(request, _object(tensor, f"input {index}"), index, reader)
    reader.check_used()
    if 0 < len(request.raw_input_contents) < len(request.inputs):
        raise RequestError("send every input as binary data or every input as JSON 'data', not a mix")

    named = {}
    for index, tensor in enumerate(_list(fields.get("outputs", []), "'outputs'")):
        name, binary_output = _add_output(request, _object(tensor, f"output {index}"), index)
        named[name] = binary_output
    return request, OutputFormat(named, rest)


def encode_infer(response: pb.ModelInferResponse, output_format: OutputFormat) -> tuple[bytes, int | None]:
    """The HTTP body of an answer, and the length of its JSON header when binary data follows it."""
    header: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        header["id"] = response.id
    outputs, blobs = [], []
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if output_format.binary(tensor.name):
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _json_data(tensor, raw)
        outputs.append(entry)
    header["outputs"] = outputs
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)


def message_json(message: Message) -> dict[str, Any]:
    """A protobuf message as Triton's JSON: proto field names, every field (defaults too), and 64-bit
    integers as numbers (protobuf's own JSON mapping writes them as strings)."""
    fields = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _numbers_in(fields, message.DESCRIPTOR)


def index_json(index: pb.RepositoryIndexResponse) -> list[dict[str, str]]:
    """The repository index as Triton lists it: no version or reason where there is none."""
    entries = []
    for model in index.models:
        entry = {"name": model.name, "version": model.version, "state": model.state, "reason": model.reason}
        entries.append({key: value for key, value in entry.items() if value or key in ("name", "state")})
    return entries


def json_object(text: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise RequestError(f"{what} is not valid JSON: {err}") from None
    return _object(value, what)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return body, view[:0]
    try:
        length = int(header_length)
    except ValueError:
        raise RequestError(f"{HEADER_LENGTH} must be a number of bytes, got {shown(header_length)}") from None
    if not 0 <= length <= len(body):
        raise RequestError(f"{HEADER_LENGTH} is {length} bytes, but the body has {len(body)}")
    return body[:length], view[length:]


class _BinaryData:
    """The bytes after the JSON header, handed out to inputs in order of their `binary_data_size`."""

    def __init__(self, data: memoryview, announced: bool) -> None:
        self.data, self.announced, self.offset = data, announced, 0

    def take(self, size: int, where: str) -> bytes:
        if not self.announced:
            raise RequestError(
                f"{where} has a binary_data_size, but the request has no {HEADER_LENGTH} header to say "
                "where its JSON ends"
            )
        left = len(self.data) - self.offset
        if size > left:
            raise RequestError(
                f"{where}: binary_data_size is {size} bytes, but only {left} bytes of binary data remain"
            )
        self.offset += size
        return bytes(self.data[self.offset - size : self.offset])

    def check_used(self) -> None:
        left = len(self.data) - self.offset
        if left:
            raise RequestError(f"{left} bytes of binary data follow what the inputs' binary_data_size claim")


def _add_input(
    request: pb.ModelInferRequest, fields: dict[str, Any], index: int, reader: _BinaryData
) -> None:
    name = _text(fields.get("name"), f"'name' of input {index}")
    where = f"input {shown(name)}"
    tensor = request.inputs.add(
        name=name,
        datatype=_text(fields.get("datatype"), f"'datatype' of {where}"),
        shape=_shape(fields.get("shape"), where),
    )
    parameters = _object(fields.get("parameters", {}), f"'parameters' of {where}")
    if "shared_memory_region" in parameters:
        raise RequestError(f"{where}: shared memory is not supported; send the tensor in the request")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in fields:
            raise RequestError(f"{where} has both 'data' and a binary_data_size; send one")
        request.raw_input_contents.append(reader.take(_size(size, f"binary_data_size of {where}"), where))
    elif "data" in fields:
        _set_contents(tensor, fields["data"], where)
    else:
        raise RequestError(f"{where} has neither 'data' nor a binary_data_size parameter")


def _add_output(request: pb.ModelInferRequest, fields: dict[str, Any], index: int) -> tuple[str, bool]:
    name = _text(fields.get("name"), f"'name' of output {index}")
    where = f"output {shown(name)}"
    parameters = _object(fields.get("parameters", {}), f"'parameters' of {where}")
    if "shared_memory_region" in parameters:
        raise RequestError(f"{where}: shared memory is not supported; the answer carries the tensor")
    binary = _flag(parameters.get("binary_data", False), f"binary_data of {where}")
    tensor = request.outputs.add(name=name)
    _set_parameters(
        tensor.parameters, {k: v for k, v in parameters.items() if k != "binary_data"}, f"{where} parameter"
    )
    return name, binary


def _set_contents(tensor: Any, data: Any, where: str) -> None:
    datatype = tensor.datatype
    if datatype in _BINARY_ONLY:
        raise RequestError(f"{where}: {datatype} cannot be sent as JSON 'data'; send it as binary data")
    field = _CONTENTS.get(datatype)
    if field is None:
        raise RequestError(
            f"{where}: unknown datatype {shown(datatype)}; one of {[*_CONTENTS, *_BINARY_ONLY]}"
        )
    if not isinstance(data, list):
        raise RequestError(f"{where}: 'data' must be a list (flat or nested by the shape), got {shown(data)}")
    tensor.contents.SetInParent()  # present even when empty: the engine then counts the elements
    values = _strings(data, where) if datatype == "BYTES" else _numbers(data, datatype, where)
    getattr(tensor.contents, field).extend(values)


def _numbers(data: list[Any], datatype: str, where: str) -> list[Any]:
    """JSON numbers, flat or nested, as `datatype`'s values, row-major; no silent wrap-around."""
    kinds = "b" if datatype == "BOOL" else "iu" if datatype[0] in "IU" else "iuf"
    noun = {"b": "booleans", "iu": "integers", "iuf": "numbers"}[kinds]
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        array = None
    if array is None or (array.size and array.dtype.kind not in kinds):
        raise RequestError(
            f"{where}: {datatype} 'data' must be {noun}, nested evenly if at all; got {shown(data)}"
        )
    dtype = DTYPES[datatype]
    if array.size and dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise RequestError(f"{where}: a value of 'data' is outside {datatype}'s range")
    return array.astype(dtype).ravel().tolist()


def _strings(data: list[Any], where: str) -> list[bytes]:
    """BYTES elements from JSON strings, flat or nested (walked without recursion), UTF-8 encoded."""
    elements: list[bytes] = []
    pending = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, list):
                pending.append(iter(item))
                break
            if not isinstance(item, str):
                raise RequestError(f"{where}: BYTES 'data' must hold strings, got {shown(item)}")
            elements.append(_utf8(item, f"{where}: a BYTES element"))
        else:
            pending.pop()
    return elements


def _json_data(tensor: Any, raw: bytes) -> list[Any]:
    if tensor.datatype == "BYTES":
        try:
            return [e.decode() for e in unpack_bytes(tensor.name, list(tensor.shape), raw)]
        except UnicodeDecodeError:
            raise RequestError(
                f"output {tensor.name!r} holds bytes that are not UTF-8 text; ask for it with binary_data"
            ) from None
    values = np.frombuffer(raw, DTYPES[tensor.datatype])
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        # JSON has no NaN or Infinity (strict parsers refuse Python's bare tokens): null, which
        # tritonclient.http's as_numpy reads back as NaN; binary data keeps the exact values
        return [v if np.isfinite(v) else None for v in values.tolist()]
    return values.tolist()


def _set_parameters(target: Any, parameters: dict[str, Any], where: str) -> None:
    """JSON parameters as `InferParameter`s: booleans, 64-bit integers, numbers, strings."""
    for key, value in parameters.items():
        parameter = target[_utf8(key, f"{where} name")]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            parameter.int64_param = value
        elif isinstance(value, int) and 0 <= value < 2**64:
            parameter.uint64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = _utf8(value, f"{where} {shown(key)}")
        else:
            raise RequestError(
                f"{where} {shown(key)} must be a boolean, 64-bit integer, number or text, not {shown(value)}"
            )


def _numbers_in(fields: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in fields:
            continue
        value = fields[field.name]
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            item = entry.fields_by_name["value"]
            fields[field.name] = {k: _number_in(item, v) for k, v in value.items()}
        elif field.is_repeated:
            fields[field.name] = [_number_in(field, v) for v in value]
        else:
            fields[field.name] = _number_in(field, value)
    return fields


def _number_in(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _numbers_in(value, field.message_type)
    return int(value) if field.type in _INT64 else value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object, got {shown(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestError(f"{what} must be a JSON list, got {shown(value)}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{what} must be a string, got {shown(value)}")
    _utf8(value, what)
    return value


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise RequestError(f"{what} is not valid Unicode text (a lone surrogate): {shown(value)}") from None


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{what} must be true or false, got {shown(value)}")
    return value


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(f"{what} must be a number of bytes, got {shown(value)}")
    return value


def _shape(value: Any, where: str) -> list[int]:
    dims = _list(value, f"'shape' of {where}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and -(2**63) <= d < 2**63 for d in dims):
        raise RequestError(f"'shape' of {where} must be a list of integers, got {shown(value)}")
    return dims
