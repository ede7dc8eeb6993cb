"""Domain-free building blocks every layer may use: resource ids, the naming
rules, Extended JSON values, regular-expression limits, a streaming multipart
reader, offset pagination and the request id of the request being served.

Nothing here knows a database, an HTTP route or a feature; it imports only the
base modules (`app.errors`, `app.clock`).
"""

from app.kit.ejson import (
    DECIMAL_SUPPORTED,
    INT64_MAX,
    INT64_MIN,
    NOT_A_WRAPPER,
    WrapperError,
    decode_wrapper,
    parse_datetime,
    parse_object_id_value,
    to_extended,
    to_plain,
)
from app.kit.ids import RangedIds, id_key, parse_object_id, split_range
from app.kit.multipart_stream import (
    Event,
    Field,
    FileData,
    FileEnd,
    FileStart,
    MalformedMultipart,
    multipart_boundary,
    read_multipart,
)
from app.kit.names import InvalidName, check_name, field_name_problem, name_problem
from app.kit.pagination import Pagination
from app.kit.regex_limits import MAX_REGEX, regex_problem
from app.kit.request_context import (
    bind_request_id,
    choose_request_id,
    current_request_id,
    reset_request_id,
)

__all__ = [
    "DECIMAL_SUPPORTED",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_REGEX",
    "NOT_A_WRAPPER",
    "Event",
    "Field",
    "FileData",
    "FileEnd",
    "FileStart",
    "InvalidName",
    "MalformedMultipart",
    "Pagination",
    "RangedIds",
    "WrapperError",
    "bind_request_id",
    "check_name",
    "choose_request_id",
    "current_request_id",
    "decode_wrapper",
    "field_name_problem",
    "id_key",
    "multipart_boundary",
    "name_problem",
    "parse_datetime",
    "parse_object_id",
    "parse_object_id_value",
    "read_multipart",
    "regex_problem",
    "reset_request_id",
    "split_range",
    "to_extended",
    "to_plain",
]
