"""OpenNebula's error codes and the exception that carries one to the wire."""

from __future__ import annotations

SUCCESS = 0x0000
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000
LOCKED = 0x8000


class OneError(Exception):
    """A failed call: answered as ``[false, "[method] message", code, resp_id, -1]``."""

    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


class Fault(Exception):
    """A malformed call: answered as an XML-RPC fault, as xmlrpc-c does in oned."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(obj: str, oid: int) -> OneError:
    if oid == -1:
        return OneError(NO_EXISTS, f"Error getting {obj} Pool.", oid)
    return OneError(NO_EXISTS, f"Error getting {obj} [{oid}].", oid)


def not_authorized(uid: int, right: str, obj_type: str, oid: int = -1) -> OneError:
    """oned's AuthRequest message, e.g. ``User [2] : Not authorized to perform MANAGE VM [7].``"""
    where = f" [{oid}]" if oid >= 0 else ""
    return OneError(AUTHORIZATION,
                    f"User [{uid}] : Not authorized to perform {right} {obj_type}{where}.", oid)


def action_error(action: str, state_name: str, oid: int = -1) -> OneError:
    return OneError(
        ACTION,
        f'Error performing action "{action}": This action is not available for state '
        f"{state_name}",
        oid,
    )


AUTH_FAILED = "User couldn't be authenticated, aborting call."
