"""Errors raised anywhere below the gateway and turned into AWS error documents there.

A ServiceError carries the AWS error code, a message that tells the caller what was wrong and
what to do, and the HTTP status. The helpers below build the common EC2 codes so every module
spells them the same way.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error the client is told about, as an AWS error document."""

    def __init__(self, code: str, message: str, status: int = 400, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        #: additional elements for the S3 error document (Resource, BucketName, Key, ...)
        self.extra = extra
        #: additional HTTP headers to send with the error (e.g. Allow, Retry-After)
        self.headers: dict[str, str] = {}


def missing_parameter(name: str) -> ServiceError:
    return ServiceError("MissingParameter", f"The request must contain the parameter {name}.")


def invalid_value(name: str, value: object, why: str) -> ServiceError:
    return ServiceError("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. {why}")


def invalid_combination(message: str) -> ServiceError:
    return ServiceError("InvalidParameterCombination", message)


def malformed_id(kind: str, value: str) -> ServiceError:
    """InvalidInstanceID.Malformed and friends: the id does not have the shape of such an id."""
    return ServiceError(
        f"{kind}.Malformed",
        f'Invalid id: "{value}" (expecting a prefix followed by 8 or 17 lowercase hexadecimal digits).',
    )


def not_found(kind: str, message: str) -> ServiceError:
    return ServiceError(f"{kind}.NotFound", message)


def dry_run_ok() -> ServiceError:
    return ServiceError(
        "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", status=412
    )


def incorrect_state(instance_id: str, state: str, action: str) -> ServiceError:
    return ServiceError(
        "IncorrectInstanceState",
        f"The instance '{instance_id}' is not in a state from which it can be {action} (it is {state}).",
    )
