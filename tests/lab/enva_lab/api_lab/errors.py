"""Errors as PVE answers them: a status, the message (the HTTP reason phrase), per-parameter errors."""

API_PREFIX = "/api2/json"


class ApiError(Exception):
    """An answer PVE gives as an error: the status, its message (the reason phrase), per-parameter errors."""

    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def param_error(errors):
    return ApiError(400, "Parameter verification failed.", errors)


def perm_error(detail=None):
    return ApiError(403, "Permission check failed (%s)" % detail if detail else "Permission check failed")


# --- schema: routing and PVE's parameter checks -----------------------------------------------------
