"""Openmsg v1 answer codes (``response_code``, ``error_code``)."""

from __future__ import annotations

import enum


class ResponseCode(enum.StrEnum):
    """``response_code`` values; the member name, lower-cased, is the ``error_code``."""

    SUCCESS = "SM_S888"
    MESSAGE_DATA_MISSING = "SM_E000"
    IDENT_CODE_INVALID = "SM_E001"
    MESSAGE_REJECTED_BYUSER = "SM_E002"
    MESSAGE_UNKNOWN = "SM_E003"
    MESSAGE_HASH_INVALID = "SM_E004"
    MESSAGE_EXPIRED = "SM_E005"
    MESSAGE_DECRYPTION_ERROR = "SM_E006"
    MESSAGE_NONCE_ERROR = "SM_E007"
    MESSAGE_REJECTED_TEMP = "SM_E008"
    MESSAGE_REJECTED_PERM = "SM_E009"

    @property
    def is_success(self) -> bool:
        return self is ResponseCode.SUCCESS

    @property
    def error_code(self) -> str:
        return self.name.lower()
